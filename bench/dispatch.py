"""Web Push dispatch throughput to the loopback push service, beside pywebpush's loops and the crypto floor.

10,000 subscriptions on the loopback Web Push service (tests/peers/webpush_service.py) with VAPID
required and pinned to the bench's key. It runs in its own process (its event loop in the main
thread), so its work does not take the sending process's CPU. Its checks of a push — the VAPID JWT,
the headers, an ECDH and the decryption — cost about as much CPU as the sender's encryption, so on a
machine with two cores a peer that checked every push would cap the sender's rate near the peer's
own. It therefore checks a sample (``--verify-every N``, 100: the first request and every 100th
after it, every mode alike) and answers the others 201 at once; ``--verify-every 1`` checks every
push. After each mode it reports how many requests it answered 201, how many of them it checked,
and how many of those decrypted to the exact payload. Each sending mode runs in a child process of
its own, one after another:

- (a) a plain loop of ``pywebpush.webpush()`` (synchronous, requests, a new connection per call);
  slow, so by default it sends to a sample of the subscriptions (``--sync-sample``), which the
  output says;
- (b) a loop of ``await pywebpush.webpush_async()``, one after another, over one aiohttp session;
- (c) the crypto floor, no HTTP: per message what aes128gcm (RFC 8291) costs, done by hand with
  ``cryptography``: load the subscriber's P-256 point, generate an ephemeral P-256 key, ECDH, three
  HKDF-SHA256 derivations (IKM, CEK, nonce), AES-128-GCM, the RFC 8188 header. (The VAPID JWT is
  signed once per push service and reused until near its expiry, so it is no part of a message's
  cost.) One message is checked against ``http_ece.decrypt`` before the clock starts;
- (d) pushlang's ``WebPushChannel`` (bounded concurrency, ``--concurrency``) over the session the
  dispatcher makes, through real HTTP to the service.

Every event loop here — the service's, (b)'s and (d)'s — is the one pushlang's hosts run on
(``pushlang.aio``: uvloop where installed, else asyncio's), so (b) and (d) differ only in how they
send. The header line names it.

The modes run ``--rounds`` times (5), interleaved — a, b, c, d, then again — so every row comes from
the same run, and each row shows the median round with the spread of all rounds beside it (lowest
and highest, and that range over the median). Each row also shows the CPU time each side spent per
push (the sending process's ``time.process_time()`` over its pushes; the service process's likewise),
so a reader can tell a sender-bound figure from one capped by the peer.

Targets (ratios of the medians of rates measured in the same run, one sending process): (d) ≥ 30%
of (c), and (d) ≥ 1.6× (b); each is printed met or not met, with the per-round ratios beside it. If
one is missed (or with ``--profile``), (d) runs again under cProfile (timing the process's CPU,
not the wall clock, so other load on the machine does not count) for a smaller N and where a
push's time goes is printed: a split into named parts in microseconds per push, then the top
functions by cumulative time. The run fails (exit 1) if the service did not accept every push of
(d) or a push it checked did not decrypt to the payload sent, so the figure is an honest one.

    python bench/dispatch.py [--subscriptions 10000] [--sync-sample 1000] [--concurrency 64] [--rounds 5]
                             [--verify-every 100] [--modes sync,async,floor,channel]
                             [--profile-subscriptions 2000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from pushlang import aio

SUBJECT = "mailto:ops@shop.example.com"
TTL = 86_400
URGENCY = "normal"
# What the service worker receives for one send (SPEC §7): title, body, icon, deep link, tracking ids.
PAYLOAD = json.dumps({
    "title": "Your cart is waiting",
    "body": "The Oak Desk Lamp you added is still in your cart. Complete your order before it sells out.",
    "icon": "https://shop.example.com/static/icons/cart-192.png",
    "url": "https://shop.example.com/cart?utm_source=push&utm_campaign=abandoned_cart",
    "tag": "cart",
    "send_id": "s_01J9Z6Q8W3M4N5P6R7S8T9V0WX",
    "campaign": "abandoned_cart",
}, separators=(",", ":")).encode()

MODES = ("sync", "async", "floor", "channel")
TARGET_OF_FLOOR = 0.30
TARGET_OF_ASYNC = 1.6


def label(mode: str, args: argparse.Namespace, count: int) -> str:
    if mode == "sync":
        sample = f", sample of {count:,}" if count < args.subscriptions else ""
        return f"(a) pywebpush.webpush() loop, requests{sample}"
    return {
        "async": "(b) pywebpush.webpush_async() loop, one session",
        "floor": "(c) crypto floor: keygen+ECDH+HKDF+AES-GCM, no HTTP",
        "channel": f"(d) pushlang WebPushChannel, concurrency {args.concurrency}",
    }[mode]


# -- the push service, in its own process -------------------------------------------------------


def serve(count: int, application_server_key: str, out: Path, verify_every: int) -> int:
    """Start the service on this process's main-thread loop, write ``count`` subscriptions as JSON
    lines to ``out``, print the URL, then answer ``stats`` lines on stdin until stdin closes."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from peers.webpush_service import WebPushService  # type: ignore[import-not-found]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with WebPushService(application_server_key=application_server_key, require_vapid=True,
                                  verify_every=verify_every) as service:
            with out.open("w", encoding="utf-8") as f:
                for _ in range(count):
                    sub = service.new_subscription("chrome")
                    f.write(json.dumps({"id": sub.id, "endpoint": sub.endpoint, "p256dh": sub.p256dh,
                                        "auth": sub.auth}) + "\n")
            say({"ready": service.url})
            totals = {"requests": 0, "accepted": 0}
            cpu = time.process_time()
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
                if line.strip() != "stats":
                    continue
                requests = service.requests
                service.clear()
                statuses: dict[str, int] = {}
                verified = payload_ok = 0
                for r in requests:
                    statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
                    verified += r.verified
                    payload_ok += r.verified and r.status == 201 and r.payload == PAYLOAD
                now = time.process_time()
                say({"requests": len(requests), "statuses": statuses, "verified": verified,
                     "payload_ok": payload_ok, "cpu": now - cpu})
                cpu = now
                totals["requests"] += len(requests)
                totals["accepted"] += statuses.get("201", 0)
            print(f"push service: {totals['requests']:,} requests, {totals['accepted']:,} accepted (201), "
                  "stdin closed, stopping", file=sys.stderr)

    aio.run(main())
    return 0


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


class Service:
    """The parent's handle on the service process."""

    def __init__(self, count: int, application_server_key: str, out: Path, verify_every: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--subscriptions", str(count),
             "--application-server-key", application_server_key, "--subs-file", str(out),
             "--verify-every", str(verify_every)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the push service process exited ({self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def stats(self) -> dict[str, Any]:
        """What the service saw since the last call, and the CPU seconds it spent."""
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write("stats\n")
        stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the service stops when its stdin closes
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the sending modes, each in a child process -------------------------------------------------


def load_subscriptions(path: Path, count: int) -> list[dict[str, str]]:
    subs: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(subs) == count:
                break
            subs.append(json.loads(line))
    return subs


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def run_sync(subs: list[dict[str, str]], vapid_file: Path) -> tuple[float, float, int]:
    import pywebpush
    from py_vapid import Vapid02

    vapid = Vapid02.from_file(str(vapid_file))
    infos = [{"endpoint": s["endpoint"], "keys": {"p256dh": s["p256dh"], "auth": s["auth"]}} for s in subs]
    ok = 0
    start, cpu = time.perf_counter(), time.process_time()
    for info in infos:
        response = pywebpush.webpush(info, data=PAYLOAD, vapid_private_key=vapid, vapid_claims={"sub": SUBJECT},
                                     ttl=TTL, headers={"Urgency": URGENCY})
        ok += not isinstance(response, str) and response.status_code == 201
    return time.perf_counter() - start, time.process_time() - cpu, ok


def run_async(subs: list[dict[str, str]], vapid_file: Path) -> tuple[float, float, int]:
    import aiohttp
    import pywebpush
    from py_vapid import Vapid02

    vapid = Vapid02.from_file(str(vapid_file))
    infos: list[Any] = [{"endpoint": s["endpoint"], "keys": {"p256dh": s["p256dh"], "auth": s["auth"]}}
                        for s in subs]

    async def main() -> tuple[float, float, int]:
        ok = 0
        async with aiohttp.ClientSession() as session:
            start, cpu = time.perf_counter(), time.process_time()
            for info in infos:
                response = await pywebpush.webpush_async(
                    info, data=PAYLOAD, vapid_private_key=vapid, vapid_claims={"sub": SUBJECT}, ttl=TTL,
                    headers={"Urgency": URGENCY}, aiohttp_session=session)
                ok += not isinstance(response, str) and response.status == 201
            return time.perf_counter() - start, time.process_time() - cpu, ok

    return aio.run(main())


def encrypt_aes128gcm(payload: bytes, ua_public: bytes, auth_secret: bytes, rs: int = 4096) -> bytes:
    """RFC 8291 message encryption, aes128gcm (RFC 8188), one record, by hand with cryptography."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    receiver = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ua_public)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    as_public = ephemeral.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    shared = ephemeral.exchange(ec.ECDH(), receiver)
    ikm = HKDF(hashes.SHA256(), 32, salt=auth_secret,
               info=b"WebPush: info\x00" + ua_public + as_public).derive(shared)
    salt = os.urandom(16)
    cek = HKDF(hashes.SHA256(), 16, salt=salt, info=b"Content-Encoding: aes128gcm\x00").derive(ikm)
    nonce = HKDF(hashes.SHA256(), 12, salt=salt, info=b"Content-Encoding: nonce\x00").derive(ikm)
    body = AESGCM(cek).encrypt(nonce, payload + b"\x02", None)  # \x02: the last (only) record, no padding
    return salt + rs.to_bytes(4, "big") + bytes([len(as_public)]) + as_public + body


def check_floor_encryption() -> None:
    """The hand-made encryption must be the real thing: a browser's key pair decrypts it."""
    import http_ece  # type: ignore[import-untyped]
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ua = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    ua_public = ua.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    body = encrypt_aes128gcm(PAYLOAD, ua_public, auth)
    plain = http_ece.decrypt(body, private_key=ua, auth_secret=auth, version="aes128gcm")
    if bytes(plain) != PAYLOAD:
        raise AssertionError("the crypto floor's aes128gcm does not decrypt with http_ece")


def run_floor(subs: list[dict[str, str]]) -> tuple[float, float, int]:
    check_floor_encryption()
    keys = [(b64url_decode(s["p256dh"]), b64url_decode(s["auth"])) for s in subs]
    ok = 0
    start, cpu = time.perf_counter(), time.process_time()
    for ua_public, auth in keys:
        ok += len(encrypt_aes128gcm(PAYLOAD, ua_public, auth)) > len(PAYLOAD)
    return time.perf_counter() - start, time.process_time() - cpu, ok


def run_channel(subs: list[dict[str, str]], vapid_file: Path, concurrency: int,
                profile: cProfile.Profile | None = None) -> tuple[float, float, int]:
    from py_vapid import Vapid02

    from pushlang.dispatch.webpush import VapidAuth, WebPushChannel, WebPushTarget, webpush_session

    targets = [WebPushTarget(s["endpoint"], s["p256dh"], s["auth"]) for s in subs]

    async def main() -> tuple[float, float, int]:
        async with webpush_session(concurrency) as session:  # the session the dispatcher makes
            channel = WebPushChannel(VapidAuth(Vapid02.from_file(str(vapid_file)), SUBJECT), session,
                                     concurrency=concurrency, allow_loopback=True)  # the loopback peer
            if profile is not None:
                profile.enable()
            start, cpu = time.perf_counter(), time.process_time()
            results = await asyncio.gather(*(channel.deliver(t, PAYLOAD, ttl=TTL, urgency=URGENCY)
                                             for t in targets))
            elapsed, used = time.perf_counter() - start, time.process_time() - cpu
            if profile is not None:
                profile.disable()
            return elapsed, used, sum(1 for r in results if r.delivered and r.status == 201)

    return aio.run(main())


def split(stats: pstats.Stats, pushes: int) -> str:
    """Where a push's profiled time goes, in a few named parts (cumulative times of disjoint calls),
    in microseconds per push and shares of the total."""
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total: float = stats.total_tt  # type: ignore[attr-defined]

    def cumulative(path_end: str, function: str) -> float:
        return sum(v[3] for (path, _, name), v in table.items()
                   if name == function and path.replace(os.sep, "/").endswith(path_end))

    def builtin(*words: str) -> float:
        return sum(v[3] for (_, _, name), v in table.items() if all(w in name for w in words))

    channel = "pushlang/dispatch/webpush.py"
    parts = {
        "encryption (webpush._encrypt)": cumulative(channel, "_encrypt"),
        "aiohttp request + response (ClientSession._request)": cumulative("aiohttp/client.py", "_request"),
        "endpoint check (endpoint_problem)": cumulative(channel, "endpoint_problem"),
        "VAPID header (authorization)": cumulative(channel, "authorization"),
    }
    parts["the rest (event loop, tasks, semaphore, sockets, the channel's own code)"] = total - sum(parts.values())
    inside = {"ECDH": builtin("exchange", "ECPrivateKey"), "P-256 keygen": builtin("generate_private_key")}

    def show(name: str, value: float) -> str:
        return f"{name} {value / pushes * 1e6:,.0f} µs ({value / total:.0%})"

    return (f"per push, {total / pushes * 1e6:,.0f} µs profiled: "
            + "; ".join(show(name, value) for name, value in parts.items())
            + ". Inside encryption: " + ", ".join(show(name, value) for name, value in inside.items()))


def run_mode(args: argparse.Namespace) -> int:
    subs = load_subscriptions(Path(args.subs_file), args.count)
    vapid = Path(args.vapid)
    if args.mode == "sync":
        seconds, cpu, ok = run_sync(subs, vapid)
    elif args.mode == "async":
        seconds, cpu, ok = run_async(subs, vapid)
    elif args.mode == "floor":
        seconds, cpu, ok = run_floor(subs)
    elif args.mode == "channel":
        profile = cProfile.Profile(time.process_time) if args.profile_child else None  # CPU time, not wall
        seconds, cpu, ok = run_channel(subs, vapid, args.concurrency, profile)
        if profile is not None:
            text = io.StringIO()
            stats = pstats.Stats(profile, stream=text)
            print(split(stats, len(subs)))
            stats.sort_stats("cumulative").print_stats(args.profile_top)
            print(text.getvalue().strip())
    else:
        raise SystemExit(f"unknown mode {args.mode!r}")
    say({"count": len(subs), "seconds": seconds, "cpu": cpu, "ok": ok})
    return 0


# -- the parent: run everything, print the table ------------------------------------------------


def child(mode: str, args: argparse.Namespace, count: int, work: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--mode", mode, "--count", str(count), "--subs-file", str(work / "subs.jsonl"),
         "--vapid", str(work / "vapid.pem"), "--concurrency", str(args.concurrency), *extra],
        capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise RuntimeError(f"mode {mode} failed (exit {proc.returncode})")
    *before, last = proc.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(last)
    result["text"] = "\n".join(before)
    return result


def rate(result: dict[str, Any]) -> float:
    return float(result["count"] / result["seconds"])


class Row:
    """One mode's rounds: the median and the spread of its rate, CPU per push on each side."""

    def __init__(self, rounds: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        self.rounds = rounds
        self.rates = [rate(sent) for sent, _ in rounds]
        self.rate = statistics.median(self.rates)
        self.low, self.high = min(self.rates), max(self.rates)
        self.count = rounds[0][0]["count"]
        self.seconds = statistics.median(sent["seconds"] for sent, _ in rounds)
        self.cpu_per_push = statistics.median(sent["cpu"] / sent["count"] for sent, _ in rounds)
        self.cpu_share = statistics.median(sent["cpu"] / sent["seconds"] for sent, _ in rounds)
        self.service_per_push = statistics.median(served["cpu"] / max(1, served["requests"])
                                                  for _, served in rounds)
        self.service_share = statistics.median(served["cpu"] / sent["seconds"] for sent, served in rounds)

    @property
    def spread(self) -> str:
        return f"{self.low:,.0f}-{self.high:,.0f} ±{(self.high - self.low) / 2 / self.rate:.0%}"


def shorten(text: str) -> str:
    """Profile lines without the long installation paths."""
    paths = sysconfig.get_paths()
    for prefix in (paths["purelib"], paths["stdlib"], str(Path(__file__).resolve().parents[1])):
        text = text.replace(prefix + os.sep, "")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--subscriptions", type=int, default=10_000, help="subscriptions, one push each (10,000)")
    ap.add_argument("--sync-sample", type=int, default=1_000,
                    help="(a) is slow: send it to this many subscriptions only (default 1,000; 0: all)")
    ap.add_argument("--concurrency", type=int, default=64, help="(d)'s bound on requests in flight (64)")
    ap.add_argument("--modes", default=",".join(MODES), help="a subset of " + ",".join(MODES))
    ap.add_argument("--rounds", type=int, default=5,
                    help="run the modes this many times, interleaved; each row is the median round (5)")
    ap.add_argument("--verify-every", type=int, default=100,
                    help="the service checks (VAPID, decryption) the first push and every Nth after it "
                         "and answers the rest at once (100; 1: every push)")
    ap.add_argument("--profile-subscriptions", type=int, default=2_000,
                    help="N for the cProfile run of (d) when a target is missed (2,000)")
    ap.add_argument("--profile", action="store_true", help="print (d)'s profile even when the targets are met")
    ap.add_argument("--profile-top", type=int, default=25, help="lines of the profile (25)")
    # the child processes
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--application-server-key", help=argparse.SUPPRESS)
    ap.add_argument("--subs-file", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--vapid", help=argparse.SUPPRESS)
    ap.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.serve:
        return serve(args.subscriptions, args.application_server_key, Path(args.subs_file), args.verify_every)
    if args.mode:
        return run_mode(args)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        ap.error(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")
    n = args.subscriptions
    if n < 1 or args.rounds < 1 or args.concurrency < 1 or args.verify_every < 1:
        ap.error("--subscriptions, --rounds, --concurrency and --verify-every must be at least 1")
    counts = {m: n for m in modes}
    if "sync" in counts and 0 < args.sync_sample < n:
        counts["sync"] = args.sync_sample

    from pushlang.dispatch.keys import generate

    rounds: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {m: [] for m in modes}  # (sender, service)
    profile: dict[str, Any] | None = None
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        public = generate(work / "vapid.pem")
        print(f"starting the push service process with {n:,} subscriptions ...", file=sys.stderr)
        service = Service(n, public, work / "subs.jsonl", args.verify_every)
        try:
            for round_number in range(1, args.rounds + 1):
                for mode in modes:
                    print(f"round {round_number}/{args.rounds}: {label(mode, args, counts[mode])} ...",
                          file=sys.stderr)
                    sent = child(mode, args, counts[mode], work)
                    rounds[mode].append((sent, service.stats()))
            rows = {m: Row(rs) for m, rs in rounds.items()}
            missed = "floor" in rows and "channel" in rows and ratio(rows, "floor") < TARGET_OF_FLOOR
            missed |= "async" in rows and "channel" in rows and ratio(rows, "async") < TARGET_OF_ASYNC
            if "channel" in rows and (missed or args.profile):
                pn = min(n, args.profile_subscriptions)
                print(f"profiling (d) for {pn:,} subscriptions ...", file=sys.stderr)
                profile = child("channel", args, pn, work, "--profile-child", "--profile-top", str(args.profile_top))
                profile["served"] = service.stats()
        finally:
            service.close()

    checked = ("every push checked (VAPID verified, the message decrypted)" if args.verify_every == 1 else
               f"1 push in {args.verify_every} checked (VAPID verified, the message decrypted), the rest "
               "answered at once")
    print(f"Web Push dispatch: {n:,} subscriptions on the loopback push service (its own process; {checked}), "
          f"a {len(PAYLOAD)}-byte payload; {os.cpu_count()} CPUs, load average {load:.2f} at the start; "
          f"event loop: {aio.loop_name()}; {args.rounds} interleaved round(s), each row the median round")
    print(f"{'mode':55} {'pushes':>7} {'seconds':>8} {'pushes/s':>9} {'spread of rounds':>20} "
          f"{'sender µs/push':>14} {'sender CPU':>10} {'service µs/push':>15} {'service CPU':>11}")
    for mode, row in rows.items():
        service_cpu = ("-", "-") if mode == "floor" else (f"{row.service_per_push * 1e6:,.0f}",
                                                           f"{row.service_share:.0%}")
        print(f"{label(mode, args, row.count):55} {row.count:7,} {row.seconds:8.2f} {row.rate:9,.0f} "
              f"{row.spread:>20} {row.cpu_per_push * 1e6:14,.0f} {row.cpu_share:10.0%} {service_cpu[0]:>15} "
              f"{service_cpu[1]:>11}")
    print("(pushes/s: the median of the rounds; spread: the lowest and highest round, and half that range over "
          "the median; µs/push: CPU time per push, sender = the sending process, service = the push service "
          "process; CPU: CPU seconds over wall seconds)")
    if "sync" in counts and counts["sync"] < n:
        print(f"(a) was measured on a sample of {counts['sync']:,} of the {n:,} subscriptions (--sync-sample)")
    if "channel" in rows:
        d = rows["channel"]
        if "floor" in rows:
            value = ratio(rows, "floor")
            c = rows["floor"]
            print(f"(d) / (c) crypto floor: {d.rate:,.0f} / {c.rate:,.0f} = {value:.1%} (target ≥ "
                  f"{TARGET_OF_FLOOR:.0%}: {'met' if value >= TARGET_OF_FLOOR else 'not met'}); per round "
                  f"{per_round(rounds, 'floor')}; the sender's CPU per push {d.cpu_per_push * 1e6:,.0f} µs, "
                  f"the floor's {c.cpu_per_push * 1e6:,.0f} µs ({c.cpu_per_push / d.cpu_per_push:.0%}: the ratio "
                  "where the sender has a core to itself)")
        if "async" in rows:
            value = ratio(rows, "async")
            print(f"(d) / (b) webpush_async loop: {value:.2f}× (target ≥ {TARGET_OF_ASYNC}×: "
                  f"{'met' if value >= TARGET_OF_ASYNC else 'not met'}); per round "
                  f"{per_round(rounds, 'async', times=True)}")
        if d.service_share >= 0.85:
            print(f"note: the push service process was busy {d.service_share:.0%} of (d)'s median round, "
                  f"{d.service_per_push * 1e6:,.0f} µs of its CPU per push: with {os.cpu_count()} CPUs shared "
                  "with the sender, the loopback peer, not the sender, may have set (d)'s rate")

    honest = True
    for mode, rs in rounds.items():
        if mode == "floor":
            continue
        count = sum(sent["count"] for sent, _ in rs)
        ok = sum(sent["ok"] for sent, _ in rs)
        requests = sum(s["requests"] for _, s in rs)
        accepted = sum(s["statuses"].get("201", 0) for _, s in rs)
        verified = sum(s["verified"] for _, s in rs)
        decrypted = sum(s["payload_ok"] for _, s in rs)
        good = ok == requests == accepted == count and decrypted == verified > 0
        honest &= good or mode != "channel"
        other = {k: v for _, s in rs for k, v in s["statuses"].items() if k != "201"}
        print(f"service check {label(mode, args, counts[mode])[:3]}: {count:,} pushes sent in {len(rs)} round(s), "
              f"{requests:,} requests received, {accepted:,} answered 201, {verified:,} checked of which "
              f"{decrypted:,} decrypted to the payload sent, {ok:,} reported delivered by the sender"
              f"{f', other statuses {other}' if other else ''} -> {'OK' if good else 'FAILED'}")
    if profile is not None:
        print(f"where (d)'s time goes: cProfile of one (d) run for {profile['count']:,} subscriptions "
              f"({rate(profile):,.0f} pushes/s under the profiler; service accepted "
              f"{profile['served']['statuses'].get('201', 0):,}), top {args.profile_top} by cumulative time:")
        print(shorten(profile["text"]))
    return 0 if honest else 1


def ratio(rows: dict[str, Row], baseline: str) -> float:
    """(d)'s median pushes/s over the baseline's."""
    return rows["channel"].rate / rows[baseline].rate


def per_round(rounds: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]], baseline: str, *,
              times: bool = False) -> str:
    """(d)'s rate over the baseline's in each round, in the order they ran."""
    values = [rate(d) / rate(b) for (d, _), (b, _) in zip(rounds["channel"], rounds[baseline], strict=True)]
    return ", ".join(f"{v:.2f}×" if times else f"{v:.0%}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
