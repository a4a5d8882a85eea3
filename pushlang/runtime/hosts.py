"""The command-line hosts of the engine: files in, decisions and a summary out."""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import msgspec

from pushlang import plan
from pushlang.config import Config
from pushlang.runtime.engine import Output
from pushlang.runtime.instants import from_local, parse_instant
from pushlang.runtime.replay import Summary, replay
from pushlang.runtime.store import MemoryStore


def find_campaign(compiled: plan.Plan, campaign_id: str) -> plan.Campaign:
    """The campaign with this id, or a usage error that lists the ids there are."""
    campaign = compiled.campaign(campaign_id)
    if campaign is None:
        ids = ", ".join(sorted(c.id for c in compiled.campaigns)) or "none"
        raise ValueError(f"no campaign `{campaign_id}`; the campaigns are: {ids}")
    return campaign


def parse_until(text: str | None, tz: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError:
        pass
    try:
        return from_local(text.replace(" ", "T"), tz)
    except ValueError:
        raise ValueError(f"--until {text!r} is not a date-time (e.g. 2026-12-31T23:59:59Z)") from None


def open_store_url(url: str | None) -> MemoryStore:
    if url is None or url in ("memory", "memory:"):
        return MemoryStore()
    from pushlang.runtime.sqlite_store import open_store

    return open_store(url)


@contextlib.contextmanager
def open_records(path: str) -> Iterator[IO[bytes]]:
    """The lines of a records file (``.gz`` read compressed), or of standard input for ``-``."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = cast(IO[bytes], gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb"))  # noqa: SIM115
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield handle


def run_replay(compiled: plan.Plan, *, events: str, out: str | None, until: str | None, rejects: str | None,
               store_url: str | None, live: Config | None = None) -> int:
    """``live``: the config whose credentials deliver every send for real (else a dry run)."""
    until_us = parse_until(until, compiled.settings.timezone)
    if live is not None:
        from pushlang.dispatch.dispatcher import DeliverySettings

        delivery = DeliverySettings.from_config(live)
        missing = delivery.problems()
        if missing:
            where = live.path or "pushlang.toml (none found)"
            raise ValueError(f"--dispatch live needs in {where}: " + "; ".join(missing))
    store = open_store_url(store_url)
    encoder = msgspec.json.Encoder()
    sink: IO[bytes] = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
    size = os.path.getsize(events) if events != "-" and os.path.isfile(events) and not events.endswith(".gz") else None

    def emit(record: Output) -> None:
        sink.write(encoder.encode(record))
        sink.write(b"\n")

    halts: list[str] = []
    dispatch = None
    try:
        if live is not None:
            from pushlang.dispatch.dispatcher import Dispatcher, LiveDispatch

            dispatcher = Dispatcher(delivery, compiled.settings.default_ttl, on_halt=halts.append)
            dispatch = LiveDispatch(dispatcher, store)
        with open_records(events) as lines, _progress(size) as progress:
            summary = replay(compiled, _counting(lines, progress), store, emit, until=until_us, dispatch=dispatch)
    finally:
        if dispatch is not None:
            dispatch.close()
        store.close()
        if out:
            sink.close()
        else:
            sink.flush()
    if rejects:
        Path(rejects).write_text("".join(msgspec.json.encode(r).decode() + "\n" for r in summary.rejects),
                                 encoding="utf-8")
    print(summary_table(summary), file=sys.stderr)
    for why in halts:
        print(f"pushlang: error: delivery halted: {why}", file=sys.stderr)
    return 1 if halts else 0


def _counting(lines: IO[bytes], progress: _Progress) -> Iterator[bytes]:
    for line in lines:
        progress.advance(len(line))
        yield line


class _Progress:
    def advance(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _progress(total_bytes: int | None) -> Iterator[_Progress]:
    """A prompt-toolkit progress bar over the input's bytes when stderr is a terminal."""
    if not sys.stderr.isatty() or total_bytes is None:
        yield _Progress()
        return
    from prompt_toolkit.output import create_output
    from prompt_toolkit.shortcuts import ProgressBar

    with ProgressBar(title="replaying", output=create_output(stdout=sys.stderr)) as bar:
        counter = bar(range(total_bytes), label="bytes read", total=total_bytes)

        class Bar(_Progress):
            def advance(self, n: int) -> None:
                counter.items_completed += n
                counter.progress_bar.invalidate()

        yield Bar()
        counter.done = True


def summary_table(summary: Summary) -> str:
    delivery = any(c.outcomes["delivered"] or c.outcomes["failed"] for c in summary.campaigns.values())
    header: tuple[str, ...] = ("campaign", "triggered", "send", "control", "delay", "suppress", "conversions",
                               "revenue")
    if delivery:
        header += ("delivered", "failed")
    rows = [header]
    for cid, c in summary.campaigns.items():
        row: tuple[str, ...] = (cid, f"{c.triggered:,}", f"{c.outcomes['send']:,}", f"{c.outcomes['control']:,}",
                                f"{c.outcomes['delay']:,}", f"{c.outcomes['suppress']:,}", f"{c.conversions:,}",
                                f"{c.revenue:,.2f}")
        if delivery:
            row += (f"{c.outcomes['delivered']:,}", f"{c.outcomes['failed']:,}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    reasons = [(cid, c.suppressed) for cid, c in summary.campaigns.items() if c.suppressed]
    if reasons:
        lines.append("")
        lines.append("suppressed by reason:")
        for cid, counts in reasons:
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            lines.append(f"  {cid.ljust(widths[0])}  " + ", ".join(f"{r} {n:,}" for r, n in ranked))
    lines.append("")
    lines.append(f"{summary.records:,} records, {len(summary.rejects):,} rejected, {summary.decisions:,} decisions"
                 + (f"; {summary.skipped:,} records older than the store's clock skipped (already replayed)"
                    if summary.skipped else ""))
    for reject in summary.rejects[:5]:
        lines.append(f"  line {reject.line}: {reject.reason}")
    if len(summary.rejects) > 5:
        lines.append(f"  ... and {len(summary.rejects) - 5:,} more (--rejects FILE lists them all)")
    return "\n".join(lines)
