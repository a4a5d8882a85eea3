"""Connecting to the scale-out's Redis, and the layout every process of one deployment shares.

:func:`connect` opens a client with socket timeouts (a half-open connection fails instead of hanging
forever) and, when the server says ``cluster_enabled:1``, a Redis Cluster client (redis-py's
``RedisCluster``) instead: the same URL works for a single node and for any node of a cluster.

The client sends each command once: redis-py can send a command again on a new connection when its
connection failed (its cluster client and its ``Redis()`` constructor do so by default), and that is
turned off. A command can fail after Redis carried it out — Redis killed between its work and its
answer, a connection cut — and sending it again is not harmless: a worker's XREADGROUP sent twice moves
past the entries of the first read (pending under its name, unseen), and an ingester's XADD sent twice
appends the records twice. Every caller handles a connection error itself, knowing what may have
happened: a worker drops its partitions and, taking them again, claims what is pending and not held; a
dispatcher reads its own backlog again; an ingester answers 503 (a retry with the same Idempotency-Key
is exactly once). On a cluster, a connection error still refreshes the client's map of the slots, so
the caller's next command goes to the right node.

:func:`check_layout` records the deployment's layout — the number of partitions and the clock the
workers run on — in the key ``layout`` the first time a process connects, and refuses a process that
was started with another: a user on another partition count would be looked for in the wrong
partition, and records on the wrong clock would be refused or fire timers early.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

LAYOUT_KEY = "layout"  # hash: partitions, clock (outside every partition: one key of its own)
CLOCKS = ("wall", "records")
SOCKET_TIMEOUT = 10.0  # seconds a command may take on the wire (blocking reads ask for less)
CONNECT_TIMEOUT = 5.0


class LayoutMismatch(Exception):
    """This process was started with another layout than the deployment's (the message says which)."""


def connect(url: str, *, timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A client for the Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``): a cluster client
    when the server is a cluster node. Commands time out after ``timeout`` seconds."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": CONNECT_TIMEOUT,
                               "health_check_interval": 30}
    client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)  # sent once (module docstring)
    try:
        cluster = not url.startswith("unix:") and _cluster_enabled(client)
    except Exception:
        client.close()
        raise
    if not cluster:
        return client
    client.close()
    from redis.cluster import RedisCluster

    options.pop("health_check_interval")
    return RedisCluster.from_url(url, retry=Retry(NoBackoff(), 0), **options)  # type: ignore[return-value]


def _cluster_enabled(client: redis.Redis) -> bool:
    from redis.exceptions import ResponseError

    try:
        info: Any = client.info("cluster")
    except ResponseError:  # a server without the section (some managed services)
        return False
    return bool(info.get("cluster_enabled"))


def is_cluster(client: Any) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def server_time_us(client: Any) -> int:
    """Redis server time in µs (TIME): the one clock every worker and ingester of a deployment shares.
    On a cluster, the time of the node that holds ``layout``."""
    if is_cluster(client):
        node = client.get_node_from_key(LAYOUT_KEY)
        seconds, micros = client.execute_command("TIME", target_nodes=node)
    else:
        seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def check_layout(client: Any, partitions: int, clock: str | None = "wall") -> None:
    """Record (first process) or check (every later one) the deployment's partitions and clock in
    ``layout``; ``clock=None``: a process the clock does not concern (a dispatcher) checks only the
    partitions. Raises :class:`LayoutMismatch` saying what differs and what to do."""
    if clock is not None and clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    pipe = client.pipeline(transaction=True)
    pipe.hsetnx(LAYOUT_KEY, "partitions", str(partitions))
    if clock is not None:
        pipe.hsetnx(LAYOUT_KEY, "clock", clock)
    pipe.hgetall(LAYOUT_KEY)
    stored: dict[Any, Any] = pipe.execute()[-1]
    found = {_text(k): _text(v) for k, v in stored.items()}
    problems = []
    if found.get("partitions") != str(partitions):
        problems.append(f"{found.get('partitions')} partitions (this process: --partitions {partitions})")
    if clock is not None and found.get("clock", clock) != clock:
        problems.append(f"the {found.get('clock')} clock (this process: --clock {clock})")
    if problems:
        raise LayoutMismatch("this Redis is laid out with " + " and ".join(problems) + ": start every "
                             "ingester and worker with the same settings (they can change only on an empty "
                             "Redis: FLUSHDB, or another db number)")


def stored_layout(client: Any) -> tuple[int, str] | None:
    """(partitions, clock) as recorded in ``layout``, or None on a Redis no process has used yet."""
    found = {_text(k): _text(v) for k, v in client.hgetall(LAYOUT_KEY).items()}
    if "partitions" not in found:
        return None
    return int(found["partitions"]), found.get("clock", "wall")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
