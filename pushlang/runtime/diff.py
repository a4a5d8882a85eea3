"""What a campaign change does, for review in a pull request (``pushlang diff OLD NEW --events FILE``).

Both compiled versions are replayed over the same records, each with its own in-memory store, and
compared per campaign id:

- ``added`` / ``removed``: the id is in only one version;
- ``changed``: the compiled plan ``Campaign`` differs (its ``file`` aside); the report names the
  top-level plan fields that differ (``audience``, ``limits``, ``message``, ``trigger`` ... as
  ``pushlang compile`` prints them);
- ``affected``: the plan is the same but the decisions differ (a segment it uses changed, the
  config changed, or another campaign's sends now count toward the global limit);
- ``unchanged``: same plan, identical decisions (every output record equal, in order).

For each campaign that is not unchanged: users gained and lost (users with at least one ``send``
in one version and none in the other), outcome counts and suppress reasons side by side,
conversions and revenue (of the sends), sends per UTC day, for a campaign with variants the sends per
variant (the ``variant`` of the ``send`` records) and the winner records' variants (SPEC §12.3–12.4),
and, when the message changed, how many sends render differently with one example. :class:`Report`
is that data; `pushlang diff` prints it.

With ``jobs`` ≥ 2 the two versions are replayed at the same time, the old one in a worker process and
the new one in this one, and compared here: about twice as fast on two cores (what crosses between
the processes is the old side's per-campaign tallies, about a megabyte for a million records), for
twice the peak memory (two stores at once). Each process runs a whole replay, so every rule holds as
it does in one process — the throttle and a winner test, which couple the users of a campaign, and
the global limits and ``min_gap``, which couple a user's campaigns — and the report is byte-identical
to the one of ``jobs=1``. More than two processes would need the users partitioned, each process
replaying both versions for its share of them: a user's global limits and ``min_gap`` tie all of that
user's campaigns to one process, and a throttle or a winner test ties all of a campaign's users to
one, so a plan with either could only be split with those rules merged across the processes. Two
replays side by side need none of that, so more than 2 jobs run as 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import pickle
import sys
import tempfile
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

import msgspec

from pushlang import plan
from pushlang.runtime.instants import iso
from pushlang.runtime.outcomes import Output
from pushlang.runtime.records import open_records
from pushlang.runtime.replay import CampaignSummary, replay
from pushlang.runtime.store import MemoryStore

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, SpawnContext

DEFAULT_USERS = 5
FEW_DAYS = 7  # up to this many days, the text report shows every day; beyond, only days that differ
MAIN_OUTCOMES = ("send", "control", "delay", "suppress")
STATUSES = ("added", "removed", "changed", "affected", "unchanged")

# Plan fields that come from a differently named block of the language, for the text report.
BLOCK_OF = {
    "audience": "who", "timezone": "when", "start": "when", "end": "when", "dnd": "when",
    "ignore_global_limits": "when", "limits": "when", "deliver_in_user_timezone": "when",
    "cutoff": "when", "trigger": "on/send", "control_percent": "control group", "variants": "message ID P%",
    "test": "test P% then winner",
}
_MESSAGE_FIELDS = ("title", "body", "url", "platforms")


# ---- the report --------------------------------------------------------------------------------


class Delta(msgspec.Struct, frozen=True):
    old: int | float
    new: int | float
    delta: int | float


class Day(msgspec.Struct, frozen=True):
    date: str  # UTC calendar date of the decisions' `at`
    old: int
    new: int
    delta: int


class Users(msgspec.Struct, frozen=True):
    """Users with at least one ``send`` in each version, and who is only in one of them."""

    old: int
    new: int
    gained: int
    lost: int
    gained_examples: list[str]
    lost_examples: list[str]


class FieldChange(msgspec.Struct, frozen=True):
    old: Any
    new: Any


class MessageExample(msgspec.Struct, frozen=True):
    user: str
    at: str
    send_id: str
    fields: dict[str, FieldChange]


class Winner(msgspec.Struct, frozen=True):
    """The variant a winner record names at an instant, in each version (null: no winner record then)."""

    at: str
    old: str | None
    new: str | None


class Messages(msgspec.Struct, frozen=True):
    """Sends made in both versions (same ``send_id``) whose rendered message differs."""

    compared: int
    changed: int
    example: MessageExample | None = None


class CampaignDiff(msgspec.Struct, frozen=True):
    campaign: str
    status: str  # added | removed | changed | affected | unchanged
    name: str
    changed_fields: list[str]
    changed_segments: list[str]  # segments it uses (directly or through others) that changed
    affected_by: list[str]  # status affected: "segment NAME", "config" and/or "global limit"
    decisions_identical: bool
    users: Users
    outcomes: dict[str, Delta]
    suppressed: dict[str, Delta]
    conversions: Delta
    revenue: Delta
    sends_per_day: list[Day]
    messages: Messages | None = None
    sends_per_variant: dict[str, Delta] = {}  # variant id → sends; empty when neither version has variants
    winners: list[Winner] = []  # the winner records of either version, by instant


class Report(msgspec.Struct, frozen=True):
    old: str
    new: str
    events: str
    until: str | None
    records: int
    rejected: int
    settings_changed: dict[str, FieldChange]
    segments_changed: list[str]
    counts: dict[str, int]  # campaigns per status
    campaigns: list[CampaignDiff]


# ---- one replay ----------------------------------------------------------------------------------


_NO_OUTPUT = hashlib.sha256().digest()


@dataclass
class _Side:
    """What one version did to one campaign, beyond replay's summary."""

    sends_by_day: Counter[str] = field(default_factory=Counter)
    senders: set[str] = field(default_factory=set)
    hasher: Any = field(default_factory=hashlib.sha256)  # of every output record, while the replay runs
    digest: bytes = _NO_OUTPUT  # the hasher's, when it is done
    messages: dict[str, tuple[Any, ...]] | None = None  # send_id -> rendered fields (tracked only)
    first_send: dict[str, tuple[str, str]] = field(default_factory=dict)  # send_id -> (user, at)
    sends_by_variant: Counter[str] = field(default_factory=Counter)
    winners: dict[str, str | None] = field(default_factory=dict)  # at -> the winner record's variant


@dataclass
class _Run:
    sides: dict[str, _Side]
    summaries: dict[str, CampaignSummary]
    records: int
    rejected: int


def _replay(compiled: plan.Plan, lines: Iterable[bytes], until: int | None, track_messages: set[str],
            progress: Callable[[int], None] | None = None) -> _Run:
    sides: dict[str, _Side] = {}
    encode = msgspec.json.Encoder().encode

    def emit(out: Output) -> None:
        side = sides.get(out.campaign)
        if side is None:
            side = sides[out.campaign] = _Side(messages={} if out.campaign in track_messages else None)
        side.hasher.update(encode(out))
        side.hasher.update(b"\n")
        if out.outcome == "winner":
            side.winners[out.at] = out.variant
        if out.outcome == "send" and out.user is not None:
            side.sends_by_day[out.at[:10]] += 1
            side.senders.add(out.user)
            if out.variant is not None:
                side.sends_by_variant[out.variant] += 1
            if side.messages is not None and out.send_id is not None and out.send_id not in side.messages:
                side.messages[out.send_id] = (out.title, out.body, out.url, out.platforms)
                side.first_send[out.send_id] = (out.user, out.at)

    summary = replay(compiled, lines, MemoryStore(), emit, until=until, progress=progress)
    for side in sides.values():
        side.digest, side.hasher = side.hasher.digest(), None  # a hash object does not cross processes
    return _Run(sides, summary.campaigns, summary.records, len(summary.rejects))


RecordSource = Callable[[], contextlib.AbstractContextManager[Iterable[bytes]]]


@dataclass(frozen=True)
class RecordFile:
    """The records of a file (``.gz`` read compressed), opened afresh by each call: a source that a
    worker process can be given (it pickles as its path)."""

    path: str

    def __call__(self) -> contextlib.AbstractContextManager[Iterable[bytes]]:
        return open_records(self.path)


def record_source(path: str) -> RecordSource:
    """Each call gives the records afresh: a file is read once per version, stdin is kept in memory."""
    if path == "-":
        data = sys.stdin.buffer.readlines()

        @contextlib.contextmanager
        def again() -> Iterator[Iterable[bytes]]:
            yield data

        return again
    return RecordFile(path)


# ---- the two replays at once -----------------------------------------------------------------------


def default_jobs() -> int:
    """2 when this process may run on two CPUs or more (the two versions at once), else 1."""
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    return 2 if cpus >= 2 else 1


class WorkerFailed(RuntimeError):
    """The worker process that replays the old version ended without a result."""


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in the worker process, as text (the cause of the one
    raised here, so that a bug there reads like a bug here)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _context() -> ForkContext | SpawnContext:
    """fork on Linux while this process runs one thread (nothing to import again, nothing to
    pickle on the way in); spawn anywhere else, where fork is unsafe or absent."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


class _Orphaned(Exception):
    """The command that started the worker process is gone."""


def _worker(receive: Connection, send: Connection, compiled: plan.Plan, records: RecordFile,
            until: int | None, track: set[str]) -> None:
    """The old version's replay in the worker process: ``("ok", run)`` or ``("error", exc, traceback)``
    to the command; nothing when the command is gone (it stops between batches then)."""
    receive.close()  # a forked worker holds the reading end too: closed, a write to a gone command breaks
    command = os.getppid()

    def stop_if_orphaned(_count: int) -> None:
        if os.getppid() != command:
            raise _Orphaned()

    try:
        with records() as lines:
            run = _replay(compiled, lines, until, track, progress=stop_if_orphaned)
        message: tuple[Any, ...] = ("ok", run)
    except _Orphaned:
        return
    except BaseException as exc:  # KeyboardInterrupt too: the parent is told, never left waiting
        text = "".join(traceback.format_exception(exc))
        try:
            pickle.loads(pickle.dumps(exc))
            message = ("error", exc, text)
        except Exception:  # an exception that does not pickle goes as its words
            message = ("error", WorkerFailed(f"{type(exc).__name__}: {exc}"), text)
    with send, contextlib.suppress(BrokenPipeError):  # broken: the command has stopped, nobody to tell
        send.send(message)


@contextlib.contextmanager
def _as_file(records: RecordSource) -> Iterator[RecordFile]:
    """A record source the worker process can open: a file as it is, anything else (stdin) written
    to a temporary file first, removed afterwards."""
    if isinstance(records, RecordFile):
        yield records
        return
    fd, path = tempfile.mkstemp(prefix="pushlang-diff-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as spool, records() as lines:
            for line in lines:
                spool.write(line if line.endswith(b"\n") else line + b"\n")
        yield RecordFile(path)
    finally:
        os.unlink(path)


class _FromWorker:
    """The worker's message, read as soon as it arrives: between batches of this process's own
    replay (so that a worker that failed stops this one early), or at its end."""

    def __init__(self, receive: Connection, worker: BaseProcess) -> None:
        self.receive, self.worker = receive, worker
        self.run: _Run | None = None

    def poll(self, _count: int) -> None:
        if self.run is None and self.receive.poll():
            self.run = self._read()

    def result(self) -> _Run:
        if self.run is None:
            self.run = self._read()
        return self.run

    def _read(self) -> _Run:
        try:
            message = self.receive.recv()
        except EOFError:  # it died without a word: killed, out of memory
            self.worker.join()
            raise WorkerFailed(f"the replay of the old version in a worker process ended without a result "
                               f"(exit code {self.worker.exitcode}); --jobs 1 replays both in this process"
                               ) from None
        if message[0] == "error":
            raise message[1] from _RemoteTraceback(message[2])
        run: _Run = message[1]
        return run


def _replay_both(old_plan: plan.Plan, new_plan: plan.Plan, records: RecordSource, until: int | None,
                 track: set[str]) -> tuple[_Run, _Run]:
    """The old version in a worker process and the new one here, at the same time."""
    with _as_file(records) as source:
        context = _context()
        receive, send = context.Pipe(duplex=False)
        worker = context.Process(target=_worker, args=(receive, send, old_plan, source, until, track),
                                 name="pushlang diff: old version", daemon=True)
        for stream in (sys.stdout, sys.stderr):  # a forked worker flushes its copy of what is buffered
            stream.flush()
        worker.start()
        send.close()  # this process keeps only the reading end: the worker's exit is then an EOF here
        incoming = _FromWorker(receive, worker)
        try:
            with source() as lines:
                after = _replay(new_plan, lines, until, track, progress=incoming.poll)
            before = incoming.result()
        except BaseException:
            worker.terminate()
            raise
        finally:
            receive.close()
            worker.join()
    return before, after


# ---- comparing plans -------------------------------------------------------------------------------


def _builtins(campaign: plan.Campaign) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(campaign)
    data.pop("file", None)
    return data


def changed_fields(old: plan.Campaign, new: plan.Campaign) -> list[str]:
    """The top-level plan fields that differ (``file`` aside), in the plan's field order."""
    a, b = _builtins(old), _builtins(new)
    return [f for f in plan.Campaign.__struct_fields__ if f != "file" and a.get(f) != b.get(f)]


def _segment_refs(node: Any, into: set[str]) -> set[str]:
    if isinstance(node, dict):
        if node.get("node") == "InSegment":
            into.add(str(node["segment"]))
        for value in node.values():
            _segment_refs(value, into)
    elif isinstance(node, list):
        for value in node:
            _segment_refs(value, into)
    return into


def _segments_used(campaign: plan.Campaign, compiled: plan.Plan) -> set[str]:
    """The segments a campaign uses, directly or through other segments."""
    found: set[str] = set()
    todo = _segment_refs(msgspec.to_builtins(campaign), set())
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        definition = compiled.segments.get(name)
        if definition is not None:
            todo |= _segment_refs(msgspec.to_builtins(definition), set()) - found
    return found


def _changed_segments(old: plan.Plan, new: plan.Plan) -> set[str]:
    a, b = msgspec.to_builtins(old.segments), msgspec.to_builtins(new.segments)
    return {name for name in set(a) | set(b) if a.get(name) != b.get(name)}


def _settings_changed(old: plan.Plan, new: plan.Plan) -> dict[str, FieldChange]:
    a, b = msgspec.to_builtins(old.settings), msgspec.to_builtins(new.settings)
    return {k: FieldChange(a.get(k), b.get(k)) for k in plan.Settings.__struct_fields__ if a.get(k) != b.get(k)}


# ---- the comparison ----------------------------------------------------------------------------------


def _delta(old: int | float, new: int | float) -> Delta:
    if isinstance(old, float) or isinstance(new, float):
        return Delta(round(old, 2), round(new, 2), round(new - old, 2))
    return Delta(old, new, new - old)


def _counts(old: Counter[str], new: Counter[str], order: Iterable[str] = ()) -> dict[str, Delta]:
    first = list(order)
    rest = sorted((set(old) | set(new)) - set(first), key=lambda k: (-max(old[k], new[k]), k))
    return {k: _delta(old[k], new[k]) for k in [*first, *rest]}


def _variant_order(*campaigns: plan.Campaign | None) -> list[str]:
    """The variant ids of the new version, then the old one's that are gone, in the order written."""
    ids = [v.id for c in campaigns if c is not None for v in c.variants]
    return list(dict.fromkeys(ids))


def _messages(old: _Side, new: _Side) -> Messages:
    assert old.messages is not None and new.messages is not None
    compared = changed = 0
    example: MessageExample | None = None
    for send_id, rendered in new.messages.items():
        before = old.messages.get(send_id)
        if before is None:
            continue
        compared += 1
        if before == rendered:
            continue
        changed += 1
        if example is None:
            user, at = new.first_send[send_id]
            fields = {name: FieldChange(a, b) for name, a, b in zip(_MESSAGE_FIELDS, before, rendered, strict=True)
                      if a != b}
            example = MessageExample(user, at, send_id, fields)
    return Messages(compared, changed, example)


def compare(old_plan: plan.Plan, new_plan: plan.Plan, records: RecordSource, *, until: int | None = None,
            users: int = DEFAULT_USERS, old_label: str = "old", new_label: str = "new",
            events_label: str = "", jobs: int = 1) -> Report:
    """Replay both plans over the same records and compare them campaign by campaign.

    ``records()`` is called once per version and must give the same lines each time (see
    ``record_source``); ``users`` is how many example ids to keep for gained and lost users.
    ``jobs`` ≥ 2: the two replays at the same time, in two processes (the module's docstring); the
    report is the same. :class:`WorkerFailed` when the worker process ends without a result; an
    exception raised there is raised here.
    """
    old_by_id = {c.id: c for c in old_plan.campaigns}
    new_by_id = {c.id: c for c in new_plan.campaigns}
    fields = {cid: changed_fields(old_by_id[cid], new_by_id[cid]) for cid in old_by_id.keys() & new_by_id.keys()}
    track = {cid for cid, names in fields.items() if "message" in names or "variants" in names}
    if jobs >= 2:
        before, after = _replay_both(old_plan, new_plan, records, until, track)
    else:
        with records() as lines:
            before = _replay(old_plan, lines, until, track)
        with records() as lines:
            after = _replay(new_plan, lines, until, track)
    segments = _changed_segments(old_plan, new_plan)
    settings = _settings_changed(old_plan, new_plan)

    campaigns: list[CampaignDiff] = []
    for cid in sorted(old_by_id.keys() | new_by_id.keys()):
        old_c, new_c = old_by_id.get(cid), new_by_id.get(cid)
        a, b = before.sides.get(cid, _Side()), after.sides.get(cid, _Side())
        sa = before.summaries.get(cid, CampaignSummary())
        sb = after.summaries.get(cid, CampaignSummary())
        identical = a.digest == b.digest
        names = fields.get(cid, [])
        used = sorted(_segments_used(new_c, new_plan) & segments) if old_c and new_c else []
        if old_c is None:
            status = "added"
        elif new_c is None:
            status = "removed"
        elif names:
            status = "changed"
        else:
            status = "unchanged" if identical else "affected"
        gained, lost = sorted(b.senders - a.senders), sorted(a.senders - b.senders)
        days = sorted(a.sends_by_day.keys() | b.sends_by_day.keys())
        affected_by: list[str] = []
        if status == "affected":
            affected_by = [f"segment {name}" for name in used]
            if settings:
                affected_by.append("config")
            if not affected_by and new_c is not None and not new_c.ignore_global_limits and any(
                    s.global_per_user_per_day or s.global_per_user_per_week or s.min_gap
                    for s in (old_plan.settings, new_plan.settings)):
                affected_by.append("global limit")  # another campaign's sends changed what this one may send
        shown = new_c or old_c
        assert shown is not None
        campaigns.append(CampaignDiff(
            campaign=cid,
            status=status,
            name=shown.name,
            changed_fields=names,
            changed_segments=used,
            affected_by=affected_by,
            decisions_identical=identical,
            users=Users(len(a.senders), len(b.senders), len(gained), len(lost), gained[:users], lost[:users]),
            outcomes=_counts(sa.outcomes, sb.outcomes, MAIN_OUTCOMES),
            suppressed=_counts(sa.suppressed, sb.suppressed),
            conversions=_delta(sa.conversions, sb.conversions),
            revenue=_delta(float(sa.revenue), float(sb.revenue)),
            sends_per_day=[Day(d, a.sends_by_day[d], b.sends_by_day[d], b.sends_by_day[d] - a.sends_by_day[d])
                           for d in days],
            messages=_messages(a, b) if cid in track else None,
            sends_per_variant=_counts(a.sends_by_variant, b.sends_by_variant, _variant_order(new_c, old_c)),
            winners=[Winner(at, a.winners.get(at), b.winners.get(at)) for at in sorted(a.winners.keys() | b.winners.keys())],
        ))
    counts = Counter(c.status for c in campaigns)
    return Report(
        old=old_label, new=new_label, events=events_label,
        until=None if until is None else iso(until),
        records=after.records, rejected=after.rejected,
        settings_changed=settings,
        segments_changed=sorted(segments),
        counts={s: counts[s] for s in STATUSES},
        campaigns=campaigns,
    )
