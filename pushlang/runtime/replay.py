"""Replay: campaigns over a stream of records on the virtual clock, with a summary per campaign."""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

from pushlang import plan
from pushlang.runtime.engine import Engine, Observer, SendJob
from pushlang.runtime.outcomes import Output
from pushlang.runtime.records import Reject, read_records
from pushlang.runtime.store import Store


@dataclass
class CampaignSummary:
    outcomes: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)
    delayed: Counter[str] = field(default_factory=Counter)  # delays by reason: dnd, throttle
    conversions: int = 0  # of `send` decisions (as `pushlang stats` counts them)
    revenue: float = 0.0
    control_conversions: int = 0  # of `control` decisions: the baseline of the lift
    control_revenue: float = 0.0

    @property
    def triggered(self) -> int:
        """Decisions made; a delayed decision is made again later, so it counts once."""
        o = self.outcomes
        return o["send"] + o["control"] + o["suppress"]


@dataclass
class Summary:
    campaigns: dict[str, CampaignSummary]
    records: int = 0
    skipped: int = 0  # older than the store's clock: a previous replay on this store processed them
    rejects: list[Reject] = field(default_factory=list)
    decisions: int = 0
    # counted flat while the replay runs (one dict update per output), folded into `campaigns` at the end
    _counts: dict[tuple[str, str, str | None], int] = field(default_factory=dict)
    _revenue: dict[tuple[str, str], float] = field(default_factory=dict)
    _control: set[str | None] = field(default_factory=set)  # send_ids of control decisions

    def add(self, out: Output) -> None:
        outcome = out.outcome
        if outcome == "control":
            self._control.add(out.send_id)
        elif outcome == "convert" and out.send_id in self._control:
            outcome = "control_convert"  # a conversion of the control group (SPEC §8), not of a push
        key = (out.campaign, outcome, out.reason)
        self._counts[key] = self._counts.get(key, 0) + 1
        if out.revenue:
            rkey = (out.campaign, outcome)
            self._revenue[rkey] = self._revenue.get(rkey, 0.0) + out.revenue

    def fold(self) -> None:
        """Bring the per-campaign summaries up to date with what ``add`` counted."""
        for (cid, outcome, reason), n in self._counts.items():
            summary = self.campaigns.get(cid)
            if summary is None:
                summary = self.campaigns[cid] = CampaignSummary()
            self.decisions += n
            if outcome == "convert":
                summary.conversions += n
                continue
            if outcome == "control_convert":
                summary.control_conversions += n
                continue
            summary.outcomes[outcome] += n
            if reason is not None and outcome == "suppress":
                summary.suppressed[reason] += n
            elif reason is not None and outcome == "delay":
                summary.delayed[reason] += n
        for (cid, outcome), revenue in self._revenue.items():
            if outcome == "control_convert":
                self.campaigns[cid].control_revenue += revenue
            else:
                self.campaigns[cid].revenue += revenue
        self._counts.clear()
        self._revenue.clear()


class Dispatch(Protocol):
    """Real delivery: takes each send, delivers what it holds when flushed (at batch ends)."""

    def __call__(self, job: SendJob) -> None: ...

    def flush(self) -> list[Output]: ...


DRY_COMMIT_EVERY = 50_000
"""Records between two commits of a dry run's store. Each commit writes every page it changed, and a
thousand records change pages all over the tables, so fewer, larger commits write fewer pages. On the
replay benchmark's 1,000,000 records (SQLite store of schema 5, CPU s of two runs): 21.1 and 20.8
with commits every 10,000 records, 21.2 and 20.3 every 25,000, 19.9 and 19.6 every 50,000 (peak
memory 330 -> 348 MiB: the changes waiting for their commit), 20.1 and 20.2 every 100,000 (372 MiB).
Earlier, on schema 3: 1,000 about 50 s, 5,000 45 s, 10,000 40 s."""


def replay(compiled: plan.Plan, lines: Iterable[bytes | str], store: Store,
           emit: Callable[[Output], None], *, until: int | None = None,
           progress: Callable[[int], None] | None = None, batch: int = 1000,
           dispatch: Dispatch | None = None, observer: Observer | None = None,
           deciding: bool = True, commit_every: int = DRY_COMMIT_EVERY) -> Summary:
    """Run the plan over JSON lines; every output goes to ``emit`` and into the summary.

    Without ``dispatch`` it is a dry run; with it, sends are delivered at the end of each batch of
    ``batch`` records and the store commits then. ``progress`` is told the records done after each
    batch. A dry run commits every ``commit_every`` records (default :data:`DRY_COMMIT_EVERY`): a
    store on disk writes each page a commit changes, and the users of a stream are spread over the
    whole of its tables, so fewer, larger commits write far fewer pages; a replay killed midway goes
    on from its last commit either way. ``observer`` sees every decision step by step (the
    engine's :class:`Observer`). ``deciding=False``: the users' state only, no decision (the engine's
    ``deciding``)."""
    summary = Summary({c.id: CampaignSummary() for c in sorted(compiled.campaigns, key=lambda c: c.id)})

    def out(record: Output) -> None:
        summary.add(record)
        emit(record)

    engine = Engine(compiled, store, out, on_send=dispatch, observer=observer, deciding=deciding)
    with _few_full_collections():
        resume = engine.clock if store.meta("clock") is not None else None
        seen_at_resume = store.meta("records_at_clock", 0)
        count = 0
        records = read_records(lines, summary.rejects)
        commit_every = batch if dispatch is not None else max(batch, commit_every)
        while chunk := list(islice(records, batch)):  # read ahead: a store loads the users of a chunk at once
            store.preload(r.user for r in chunk if resume is None or r.ts >= resume)
            for record in chunk:
                if resume is not None and (record.ts < resume or (record.ts == resume and seen_at_resume > 0)):
                    seen_at_resume -= record.ts == resume
                    summary.skipped += 1
                    continue
                engine.feed(record)
                count += 1
                if count % batch == 0 and dispatch is not None:
                    for delivery in dispatch.flush():
                        out(delivery)
                if count % commit_every == 0:
                    store.commit()
                if count % batch == 0 and progress is not None:
                    progress(count)
        engine.finish(until)
        if dispatch is not None:
            for delivery in dispatch.flush():
                out(delivery)
            store.commit()
    summary.records = count
    summary.fold()
    return summary


@contextlib.contextmanager
def _few_full_collections() -> Iterator[None]:
    """A replay builds up millions of objects that live to its end (every user's state) and makes
    almost no reference cycles, so the collector's full passes over them cost a tenth of its time and
    find nothing: while it runs, a full pass comes after 1,000 passes over the middle generation,
    not 10. The young generations are collected as usual."""
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, 1000))
    try:
        yield
    finally:
        gc.set_threshold(young, middle, full)
