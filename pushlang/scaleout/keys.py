"""Every Redis key and name of the scale-out, in one place.

Users map to P fixed partitions (:func:`partition_of`). Every key of a partition carries the hash tag
``{p}``, so a partition lives in one Redis Cluster slot and one MULTI/EXEC can span all of it:

- ``ev:{p}``     input stream: field ``r`` = one raw JSON record line, or ``end`` = an end marker (µs);
- ``out:{p}``    output stream: field ``o`` = one msgspec-JSON ``Output``;
- ``dl:{p}``     dead letters: the entry as read, its ``id`` and the ``error``;
- ``lease:{p}``  the id of the worker that owns the partition;
- ``ob:{p}``     outbox stream: field ``j`` = one msgspec-JSON ``QueuedSend``;
- ``sent:{p}:<send_id>``  a send's marker, a hash: the entry and dispatch worker that own it (then
  ``done``) and the targets whose request is on the wire;
- ``idem:{p}:<key>``  an ingest request's records of partition p are in ``ev:{p}`` (the request's
  digest; expires after a day);
- ``u:{p}``, ``tm:{p}``, ``tmd:{p}``, ``meta:{p}``  the partition's state (users, timers by due,
  timer data, bookkeeping);
- ``thr:{c:<campaign>}:<period>``  a throttled campaign's sends and reserved slots in one period (µs start),
  shared by every partition (SPEC §12.1); all of a campaign's periods in one slot; expire after a week;
- ``wt:{c:<campaign>}:<s>``  hash: partition → its part of the tally of the winner test at occurrence s
  (JSON), the barrier of SPEC §12.4 in scale-out; expires after a week;
- ``workers``    sorted set: partition worker ids scored by their heartbeat's expiry (not in a slot
  of its own partition: it is the one key every worker shares).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

DEFAULT_PARTITIONS = 256
WORKER_GROUP = "workers"  # the consumer group of the partition workers on ev:{p}
DISPATCH_GROUP = "dispatch"  # the consumer group of the dispatch workers on ob:{p}
WORKERS_KEY = "workers"


def partition_of(user: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """The partition that owns ``user``: ``crc32(user) % partitions`` (stable across processes)."""
    return zlib.crc32(user.encode()) % partition_count(partitions)


def partition_count(partitions: int) -> int:
    """``partitions``, when it can be a number of partitions (ValueError otherwise)."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return partitions


def consumer_id(given: str | None) -> str:
    """The name a worker goes by in leases and consumer groups: ``given``, else host-pid-random."""
    import socket  # here: the command line reads DEFAULT_PARTITIONS to build its parser
    import uuid

    return given or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _in_slot(prefix: str) -> Callable[[int], str]:
    """The key builder of a per-partition key: ``prefix:{p}``, in partition p's cluster slot."""
    return lambda p: f"{prefix}:{{{p}}}"


stream_key = _in_slot("ev")
out_key = _in_slot("out")
dead_key = _in_slot("dl")
lease_key = _in_slot("lease")
outbox_key = _in_slot("ob")
users_key = _in_slot("u")
timers_key = _in_slot("tm")
timer_data_key = _in_slot("tmd")
meta_key = _in_slot("meta")
_sent = _in_slot("sent")
_idem = _in_slot("idem")


def sent_key(p: int, send_id: str) -> str:
    return f"{_sent(p)}:{send_id}"


def idempotency_key(p: int, key: str) -> str:
    return f"{_idem(p)}:{key}"


def throttle_key(campaign: str, period: int) -> str:
    """The shared counter of a throttled campaign's period (every partition reads and takes it)."""
    return f"thr:{{c:{campaign}}}:{period}"


def winner_key(campaign: str, s: int) -> str:
    """The parts of a winner test's tally, one field per partition."""
    return f"wt:{{c:{campaign}}}:{s}"


def partition_of_key(key: str) -> int:
    """The partition of a per-partition key: the number in its hash tag (``ob:{7}`` → 7)."""
    return int(key[key.index("{") + 1:key.index("}")])
