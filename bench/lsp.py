"""Latency of `pushlang lsp`: from a didChange to the publishDiagnostics it leads to, debounce set to 0.

Measured through the real server process (`python -m pushlang lsp --debounce 0`) with pygls' own client over
stdio, so the figures include the protocol: the change message, the check, converting the diagnostics and
sending them. Each change is an edit of one number (a campaign's price, a segment's amount: n ↔ n + 1),
sent as an incremental change as an editor sends it; each round waits for that version's diagnostics (and,
for the shared file, for those of every file that imports it) before the next.

Rows (medians over the rounds, p90 beside them):
- a change in a 300-line file of a generated 2,000-line workspace (files that each import one shared file
  of segments; every file is open). Target: ≤ 150 ms.
- a change in one 2,000-line file. Target: ≤ 2 × `pushlang lint FILE` on the same file, measured in this run
  in process (`main(["lint", FILE])`, the compiler's work, no interpreter start); the lint command as its
  own process is shown too.
- for reference, no target: a change in the shared segments file, which every open file imports (all of
  them are checked again).

    python bench/lsp.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from pushlang.cli import main as pushlang_main

SEGMENT = '''\
# Loyal buyers, tier {m}.
segment loyal_{m} {{
  did "Charged" where event.amount >= {price} at least 2 times in last 90d
  user.vip == true or exists user.tier
}}

'''

CAMPAIGN = '''\
# Campaign {n}: an abandoned cart with a 10 minute window.
campaign cart_{n} "Abandoned cart {n}" {{
  platforms chrome, firefox, edge
  on "Added To Cart" where event.price > {price} and event.product_id != "sku-{n}"
  unless "Charged" where event.cart_id == trigger.cart_id within 10m
  who {{
    user.country in ["IN", "US", "DE"]
    did "Viewed Product" at least 2 times in last 7d
    not segment loyal_{m}
  }}
  when {{
    start 2026-12-01 00:00
    end 2027-01-01 00:00
    timezone "Europe/Berlin"
    dnd 21:00 to 09:00 delay
    limit 1 per day
  }}
  message {{
    title "Still thinking, @{{user.first_name | default: 'friend'}}?"
    body "Your @{{event.product_name | default: 'cart'}} is waiting"
    url "https://shop.example.com/cart?item=@{{event.product_id | urlencode}}"
    image "https://cdn.example.com/p/@{{event.product_id | urlencode}}.jpg"
    ttl 2d
    button "Buy now" -> "https://shop.example.com/checkout"
  }}
  control group 10%
  conversion "Charged" within 2d revenue event.amount
}}

'''
SEGMENTS = 33  # in the shared file, 6 lines each
SHARED_LINES, FILE_LINES, WORKSPACE_LINES = 200, 300, 2000  # segments.push, each file importing it, in all
WORKSPACE_TARGET_MS = 150.0


def padded(text: str, lines: int) -> str:
    """``text`` made exactly ``lines`` lines long with comment lines at its end."""
    missing = lines - text.count("\n")
    return text + "".join(f"# note {i}\n" for i in range(missing))


def campaigns(first: int, lines: int, header: str = "") -> str:
    """``header`` and campaigns numbered from ``first`` (each naming a shared segment), ``lines`` lines long."""
    parts, n = [header], first
    while sum(p.count("\n") for p in parts) + CAMPAIGN.count("\n") <= lines:
        parts.append(CAMPAIGN.format(n=n, m=n % SEGMENTS, price=20 + n % 13))
        n += 1
    return padded("".join(parts), lines)


def segments() -> str:
    return "".join(SEGMENT.format(m=m, price=50 + m % 7) for m in range(SEGMENTS))


def workspace(folder: Path) -> tuple[list[Path], Path]:
    """segments.push and files of FILE_LINES lines importing it, WORKSPACE_LINES lines in all."""
    shared = folder / "segments.push"
    shared.write_text(padded(segments(), SHARED_LINES), encoding="utf-8")
    files, first = [shared], 0
    for n in range((WORKSPACE_LINES - SHARED_LINES) // FILE_LINES):
        text = campaigns(first, FILE_LINES, 'import "./segments.push"\n\n')
        first += text.count("\ncampaign ")
        path = folder / f"campaigns_{n + 1}.push"
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return files, shared


class Client:
    """pygls' client on `pushlang lsp`, noting when each (file, version) got its diagnostics."""

    def __init__(self) -> None:
        self.lsp = LanguageClient("pushlang-bench", "0")
        self.arrived: dict[tuple[str, int | None], tuple[float, int]] = {}
        self.versions: dict[str, int] = {}

        @self.lsp.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: lsp.PublishDiagnosticsParams) -> None:
            self.arrived[(params.uri, params.version)] = (time.perf_counter(), len(params.diagnostics))

    async def start(self, root: Path) -> None:
        await self.lsp.start_io(sys.executable, "-m", "pushlang", "lsp", "--debounce", "0")
        await self.lsp.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities(),
                                                             root_uri=root.as_uri()))
        self.lsp.initialized(lsp.InitializedParams())

    async def stop(self) -> None:
        await self.lsp.shutdown_async(None)
        self.lsp.exit(None)
        await self.lsp.stop()

    async def wait(self, uri: str, version: int) -> tuple[float, int]:
        while (uri, version) not in self.arrived:
            await asyncio.sleep(0.0005)
        return self.arrived[(uri, version)]

    async def open(self, path: Path) -> None:
        uri = path.as_uri()
        self.versions[uri] = 1
        self.lsp.text_document_did_open(lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri, "pushlang", 1, path.read_text(encoding="utf-8"))))
        _, problems = await self.wait(uri, 1)
        if problems:
            raise SystemExit(f"{path.name}: the generated file has {problems} diagnostics")

    async def change(self, path: Path, at: lsp.Range, text: str, waits_for: list[Path]) -> float:
        """Seconds from sending an edit of ``path`` to its diagnostics (and to the first after it of each file in
        ``waits_for``, the files that import it)."""
        uri = path.as_uri()
        self.versions[uri] += 1
        version = self.versions[uri]
        started = time.perf_counter()
        self.lsp.text_document_did_change(lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(version, uri),
            [lsp.TextDocumentContentChangePartial(range=at, text=text)]))
        ends = [(await self.wait(uri, version))[0]]
        for other in waits_for:  # an importer's check is published at its own (unchanged) version
            other_uri = other.as_uri()
            while True:
                found = [t for (u, _), (t, _) in self.arrived.items() if u == other_uri and t > started]
                if found:
                    ends.append(min(found))
                    break
                await asyncio.sleep(0.0005)
        return max(ends) - started


def number_range(path: Path, before: str) -> lsp.Range:
    """Where the first two-digit number after ``before`` is in ``path``: a campaign's price, a segment's
    amount."""
    lines = path.read_text(encoding="utf-8").split("\n")
    line = next(i for i, text in enumerate(lines) if before in text)
    start = lines[line].index(before) + len(before)
    return lsp.Range(lsp.Position(line, start), lsp.Position(line, start + 2))


async def latencies(client: Client, path: Path, rounds: int, waits_for: list[Path] | None = None) -> list[float]:
    at = number_range(path, "event.amount >= " if waits_for else "event.price > ")
    before = path.read_text(encoding="utf-8").split("\n")[at.start.line][at.start.character:at.end.character]
    times = []
    for n in range(rounds + 3):  # 3 rounds to warm up
        text = str(int(before) + 1) if n % 2 == 0 else before
        seconds = await client.change(path, at, text, waits_for or [])
        if n >= 3:
            times.append(seconds)
    return times


def lint_in_process(path: Path, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = pushlang_main(["lint", str(path)])
        times.append(time.perf_counter() - started)
        if code != 0:
            raise SystemExit(f"pushlang lint {path} exited {code}")
    return times[1:]


def lint_process(path: Path, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pushlang", "lint", str(path)], check=True, capture_output=True,
                       cwd=path.parent)
        times.append(time.perf_counter() - started)
    return times


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def p90_ms(times: list[float]) -> float:
    return sorted(times)[max(0, int(len(times) * 0.9) - 1)] * 1000


async def run(rounds: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "workspace").mkdir()
        files, shared = workspace(root / "workspace")
        target = files[1]
        (root / "single").mkdir()
        big = root / "single" / "big.push"
        big.write_text(campaigns(0, WORKSPACE_LINES, segments()), encoding="utf-8")
        lines = {path: path.read_text(encoding="utf-8").count("\n") for path in [*files, big]}

        client = Client()
        await client.start(root)
        try:
            for path in [*files, big]:
                await client.open(path)
            in_workspace = await latencies(client, target, rounds)
            single = await latencies(client, big, rounds)
            shared_change = await latencies(client, shared, max(rounds // 3, 5), waits_for=files[1:])
        finally:
            await client.stop()
        lint = lint_in_process(big, rounds)
        lint_own_process = lint_process(big, max(rounds // 3, 5))

    in_files = sum(lines[f] for f in files)
    print(f"workspace: {in_files:,} lines in {len(files)} files (segments.push, {lines[shared]} lines, imported by "
          f"{len(files) - 1} files of {FILE_LINES} lines); one file of {lines[big]:,} "
          f"lines; {rounds} rounds; debounce 0; through the server process (pygls' client, stdio)")
    print(f"{'':58} {'median ms':>10} {'p90 ms':>8}  target")
    row(f"change in a {lines[target]}-line file of the workspace", in_workspace, f"≤ {WORKSPACE_TARGET_MS:.0f} ms",
        median_ms(in_workspace) <= WORKSPACE_TARGET_MS)
    limit = 2 * median_ms(lint)
    row(f"change in one {lines[big]:,}-line file", single, f"≤ 2 × lint in process = {limit:.1f} ms",
        median_ms(single) <= limit)
    row("  pushlang lint FILE, in process (main(argv))", lint, "", None)
    row("  pushlang lint FILE, its own process", lint_own_process, "", None)
    row(f"change in segments.push ({len(files)} files checked again)", shared_change, "(for reference)", None)
    return 0


def row(label: str, times: list[float], target: str, met: bool | None) -> None:
    verdict = "" if met is None else ("met" if met else "NOT MET")
    print(f"{label:58} {median_ms(times):10.1f} {p90_ms(times):8.1f}  {target} {verdict}".rstrip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    return asyncio.run(run(args.rounds))


if __name__ == "__main__":
    sys.exit(main())
