"""`pushlang replay`: campaigns over a file of records on the virtual clock; decisions out, a summary table."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pushlang.commands import common

if TYPE_CHECKING:
    from pushlang import plan
    from pushlang.config import Config
    from pushlang.runtime.outcomes import Output
    from pushlang.runtime.replay import Summary


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "replay", help="run campaigns over a stream of records on the virtual clock",
        description="Replay campaigns over JSON Lines records (SPEC §9.1) on a virtual clock: decisions "
                    "go to --out (default stdout), a summary table per campaign to stderr. Dry run: "
                    "nothing is delivered.",
    )
    common.add_paths(p)
    p.add_argument("--events", required=True, metavar="FILE", help="records as JSON Lines, or - for stdin")
    p.add_argument("--out", metavar="FILE", help="write decisions here (JSON Lines) instead of stdout")
    p.add_argument("--until", metavar="DATETIME",
                   help="fire timers due up to this instant at the end (default: the last record's time); "
                        "without a zone it is in the config's timezone, else UTC")
    p.add_argument("--rejects", metavar="FILE", help="write each rejected line here with its number and reason")
    p.add_argument("--store", metavar="URL",
                   help="state store: memory (default) or sqlite:///file.db (a later replay continues it)")
    common.add_config(p)
    p.add_argument("--dispatch", choices=("dry-run", "live"), default="dry-run",
                   help="dry-run (default) decides only; live really delivers every send with the "
                        "credentials of pushlang.toml ([vapid], [apns]) and records each delivery")
    return p


def run(args: argparse.Namespace) -> int:
    compiled, config = common.compile_checked(args.paths, config_path=args.config)
    return run_replay(compiled, events=args.events, out=args.out, until=args.until, rejects=args.rejects,
                      store_url=args.store, live=config if args.dispatch == "live" else None)


def run_replay(compiled: plan.Plan, *, events: str, out: str | None, until: str | None, rejects: str | None,
               store_url: str | None, live: Config | None = None) -> int:
    """``live``: the config whose credentials deliver every send for real (else a dry run)."""
    import msgspec

    from pushlang.runtime.instants import command_line_instant
    from pushlang.runtime.records import open_records
    from pushlang.runtime.replay import replay
    from pushlang.runtime.sqlite_store import open_store

    until_us = command_line_instant(until, "--until", compiled) if until is not None else None
    if live is not None:
        from pushlang.dispatch.dispatcher import DeliverySettings

        delivery = DeliverySettings.from_config(live)
        missing = delivery.problems()
        if missing:
            where = live.path or "pushlang.toml (none found)"
            raise ValueError(f"--dispatch live needs in {where}: " + "; ".join(missing))
    for path, what in ((out, "--out"), (rejects, "--rejects")):
        if path:
            common.check_writable(path, what)  # before the replay, not after it
    store = open_store(store_url)
    encoder = msgspec.json.Encoder()
    sink: IO[bytes] = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
    size = os.path.getsize(events) if events != "-" and os.path.isfile(events) else None

    pending: list[Output] = []  # encoded and written a thousand at a time, by one encoder call
    at_once = 1 if sink.isatty() else 1000  # (a terminal shows each as it is decided)

    def emit(record: Output) -> None:
        pending.append(record)
        if len(pending) >= at_once:
            sink.write(encoder.encode_lines(pending))
            pending.clear()

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
        try:
            sink.write(encoder.encode_lines(pending))
        finally:
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
    seen = summary.records + len(summary.rejects)
    if seen and len(summary.rejects) * 2 > seen:
        print(f"pushlang: error: {len(summary.rejects):,} of {seen:,} lines were rejected: is {events} a records "
              "file (JSON Lines, SPEC §9.1)?", file=sys.stderr)
        return common.EXIT_FINDINGS
    return common.EXIT_FINDINGS if halts else common.EXIT_OK


def _counting(lines: IO[bytes], progress: _Progress) -> Iterator[bytes]:
    """The lines, telling ``progress`` how many records were read and how far into the file that
    is (for a ``.gz``, into the compressed file: its size is the total)."""
    compressed = getattr(lines, "fileobj", None)  # gzip.GzipFile's underlying file
    read = records = 0
    for line in lines:
        read += len(line)
        records += 1
        if not records % 2000:
            progress.advance(records, compressed.tell() if compressed is not None else read)
        yield line
    progress.advance(records, compressed.tell() if compressed is not None else read)


class _Progress:
    def advance(self, records: int, position: int) -> None:
        pass


@contextlib.contextmanager
def _progress(total_bytes: int | None) -> Iterator[_Progress]:
    """A prompt-toolkit progress bar when stderr is a terminal: records read, and how far into the
    input file (compressed or not) that is."""
    if not sys.stderr.isatty() or total_bytes is None:
        yield _Progress()
        return
    from prompt_toolkit.output import create_output
    from prompt_toolkit.shortcuts import ProgressBar

    total = total_bytes
    with ProgressBar(title="replaying", output=create_output(stdout=sys.stderr)) as bar:
        counter = bar(range(total), label="0 records", total=total)

        class Bar(_Progress):
            def advance(self, records: int, position: int) -> None:
                counter.items_completed = min(position, total)
                counter.label = f"{records:,} records"
                counter.progress_bar.invalidate()

        yield Bar()
        counter.done = True


def summary_table(summary: Summary) -> str:
    """Per campaign: decisions by outcome, and the conversions of the sends and of the control group
    apart (as `pushlang stats` reports them)."""
    campaigns = summary.campaigns.values()
    delivery = any(c.outcomes["delivered"] or c.outcomes["failed"] for c in campaigns)
    control = any(c.outcomes["control"] for c in campaigns)
    header: tuple[str, ...] = ("campaign", "triggered", "send", "control", "delay", "suppress", "conversions",
                               "revenue")
    if control:
        header += ("control conv.", "control rev.")
    if delivery:
        header += ("delivered", "failed")
    rows = [header]
    for cid, c in summary.campaigns.items():
        row: tuple[str, ...] = (cid, f"{c.triggered:,}", f"{c.outcomes['send']:,}", f"{c.outcomes['control']:,}",
                                f"{c.outcomes['delay']:,}", f"{c.outcomes['suppress']:,}", f"{c.conversions:,}",
                                f"{c.revenue:,.2f}")
        if control:
            row += (f"{c.control_conversions:,}", f"{c.control_revenue:,.2f}")
        if delivery:
            row += (f"{c.outcomes['delivered']:,}", f"{c.outcomes['failed']:,}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("(conversions and revenue: of the sends; the control group's apart)" if control else
                 "(conversions and revenue: of the sends)")
    for title, of in (("suppressed by reason:", "suppressed"), ("delayed by reason:", "delayed")):
        reasons = [(cid, getattr(c, of)) for cid, c in summary.campaigns.items() if getattr(c, of)]
        if reasons:
            lines.append("")
            lines.append(title)
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
