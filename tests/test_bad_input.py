"""Every command against bad input: exit 1 or 2, one clean `pushlang: error:` line (or a usage line,
or diagnostics with file:line:col), never a Python traceback; output into a closed pipe exits quietly."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pushlang.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EVENTS = EXAMPLES / "events.jsonl.gz"
CART = str(EXAMPLES / "abandoned_cart.push")
USAGE = re.compile(r"pushlang( [\w-]+)*: error: \S")  # `pushlang: error: …`, `pushlang keys public: error: …`
DIAGNOSTIC = re.compile(r"\S+:\d+:\d+: error\[PL\d+\]: \S")  # path:line:col: error[CODE]: …


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of bad inputs, each named for what is wrong with it."""
    folder = tmp_path_factory.mktemp("bad")
    (folder / "binary.push").write_bytes(b"\x00\xff\xfe\x80campaign")
    (folder / "empty.push").write_text("", encoding="utf-8")
    (folder / "broken.push").write_text("campaign c {\n  on \"A\"\n  message { title \"x\" \n", encoding="utf-8")
    (folder / "deep.push").write_text("campaign c {\n  on \"A\" where " + " or ".join(["event.x == 1"] * 1200)
                                      + '\n  message {\n    title "t"\n    body "b"\n  }\n}\n', encoding="utf-8")
    (folder / "garbage.gz").write_bytes(b"this is not gzip")
    (folder / "truncated.gz").write_bytes(EVENTS.read_bytes()[:300])
    with gzip.open(folder / "binary.jsonl.gz", "wb") as out:
        out.write(os.urandom(4000))
    (folder / "binary.jsonl").write_bytes(os.urandom(4000))
    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "not_json.jsonl").write_text("hello\nworld\n" * 10, encoding="utf-8")
    (folder / "decisions_not.jsonl").write_text('{"user": "u1", "ts": 1, "name": "A"}\n', encoding="utf-8")
    (folder / "bad.toml").write_text("timezone = [\n", encoding="utf-8")
    (folder / "not_a_db.db").write_text("plain text, not SQLite\n", encoding="utf-8")
    (folder / "a_dir").mkdir()
    (folder / "not_a_key.pem").write_text("-----BEGIN NOTHING-----\n", encoding="utf-8")
    (folder / "huge_line.jsonl").write_text('{"user": "u1", "ts": 1, "name": "' + "A" * 2_000_000 + '"\n',
                                            encoding="utf-8")
    return folder


def cases(bad: Path) -> list[list[str]]:
    b = str(bad)
    missing = f"{b}/no_such_file"
    return [
        # lint, fmt, compile, explain
        ["lint", f"{b}/binary.push"], ["lint", f"{b}/broken.push"], ["lint", missing], ["lint", f"{b}/deep.push"],
        ["lint", "--config", missing, CART], ["lint", "--config", f"{b}/bad.toml", CART],
        ["lint", "--schema", missing, CART], ["lint", "--schema", f"{b}/binary.jsonl", CART],
        ["fmt", f"{b}/binary.push"], ["fmt", f"{b}/broken.push"], ["fmt", missing], ["fmt", "--check", f"{b}/a_dir"],
        ["compile", f"{b}/binary.push"], ["compile", missing], ["compile", f"{b}/broken.push"],
        ["explain", "PL99999"], ["explain", "no-such-name"],
        # replay and its inputs and outputs
        ["replay", CART, "--events", f"{b}/garbage.gz"], ["replay", CART, "--events", f"{b}/truncated.gz"],
        ["replay", CART, "--events", f"{b}/binary.jsonl.gz"], ["replay", CART, "--events", f"{b}/binary.jsonl"],
        ["replay", CART, "--events", missing], ["replay", CART, "--events", f"{b}/a_dir"],
        ["replay", CART, "--events", f"{b}/not_json.jsonl"], ["replay", CART, "--events", str(EXAMPLES / "schema.toml")],
        ["replay", CART, "--events", str(EVENTS), "--store", "sqlite:///no_such_dir/x.db"],
        ["replay", CART, "--events", str(EVENTS), "--store", f"sqlite:///{b}/not_a_db.db"],
        ["replay", CART, "--events", str(EVENTS), "--store", "postgres://x"],
        ["replay", CART, "--events", str(EVENTS), "--out", "/no_such_dir/x.jsonl"],
        ["replay", CART, "--events", str(EVENTS), "--out", f"{b}/a_dir"],
        ["replay", CART, "--events", str(EVENTS), "--rejects", "/no_such_dir/r.jsonl"],
        ["replay", CART, "--events", str(EVENTS), "--until", "not a date"],
        ["replay", CART, "--events", str(EVENTS), "--until", "99999-01-01"],
        ["replay", f"{b}/broken.push", "--events", str(EVENTS)],
        ["replay", CART, "--events", f"{b}/huge_line.jsonl"],
        # preview, reach, diff, stats, send-test
        ["preview", CART, "--campaign", "cart_abandoned_10m", "--user", "u1", "--events", f"{b}/garbage.gz"],
        ["preview", CART, "--campaign", "nope", "--user", "u1", "--events", str(EVENTS)],
        ["preview", CART, "--campaign", "cart_abandoned_10m", "--user", "u1", "--events", str(EVENTS), "--at", "soon"],
        ["reach", CART, "--campaign", "cart_abandoned_10m", "--events", f"{b}/truncated.gz"],
        ["reach", CART, "--campaign", "cart_abandoned_10m", "--store", f"sqlite:///{b}/not_a_db.db"],
        ["reach", CART, "--campaign", "nope", "--events", str(EVENTS)],
        ["diff", CART, f"{b}/broken.push", "--events", str(EVENTS)],
        ["diff", CART, CART, "--events", f"{b}/garbage.gz"],
        ["stats", f"{b}/garbage.gz"], ["stats", missing], ["stats", f"{b}/decisions_not.jsonl"],
        ["stats", "--store", f"{b}/not_a_db.db"], ["stats", "--store", "/etc/passwd"], ["stats", "--store", missing],
        ["send-test", CART, "--campaign", "cart_abandoned_10m", "--events", f"{b}/truncated.gz"],
        ["send-test", CART, "--campaign", "nope"],
        # keys
        ["keys", "public", missing], ["keys", "public", f"{b}/a_dir"], ["keys", "public", f"{b}/not_a_key.pem"],
        ["keys", "generate", "--out", "/no_such_dir/k.pem"], ["keys", "user-token", "u1", "--config", missing],
        # forget
        ["forget", "u1", "--store", missing], ["forget", "u1", "--store", f"{b}/not_a_db.db"],
        # serve, repl, scale-out: refused before any work
        ["serve", CART, "--port", "99999"], ["serve", CART, "--port", "-1"], ["serve", CART, "--host", "999.1.1.1"],
        ["serve", f"{b}/broken.push"], ["serve", CART, "--store", f"{b}/not_a_db.db"],
        ["repl", "--store", "sqlite:///no_such_dir/x.db"], ["repl", f"{b}/binary.push"],
        ["worker", CART, "--redis", "not-a-url"], ["dispatch", CART, "--redis", "not-a-url"],
        ["dispatch", CART, "--redis", "redis://127.0.0.1:9/0"],  # no credentials: refused, the outboxes wait
        ["worker", CART, "--redis", "redis://127.0.0.1:9/0", "--idle-exit", "1"],  # no Redis: gives up
        ["ingest", f"{b}/garbage.gz", "--to", "not-a-url"],
        # the language server: refused before it serves
        ["lsp", "--tcp", "nonsense"], ["lsp", "--tcp", "999.1.1.1:2087"], ["lsp", "--config", missing],
    ]


def test_the_table_reaches_every_command(bad: Path) -> None:
    names = {c.__name__.rsplit(".", 1)[-1].replace("_", "-") for c in COMMANDS}
    assert names == {case[0] for case in cases(bad)}


def test_bad_input_never_shows_a_traceback(bad: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLANG_API_TOKEN", "bad-input-token")
    monkeypatch.chdir(bad)
    problems = []
    for argv in cases(bad):
        try:
            code = main(argv)
        except SystemExit as exc:  # a command that exits itself
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        said = [line for line in (out + err).splitlines() if line.strip()]
        clean = any(USAGE.match(line) or DIAGNOSTIC.match(line) for line in said)
        if code not in (1, 2) or not clean or "Traceback" in out + err:
            problems.append((argv, code, err[-300:]))
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("argv", [
    ["replay", str(EXAMPLES), "--events", str(EVENTS)],
    ["compile", CART],
    ["lint", str(EXAMPLES), "--format", "json"],
    ["explain"],
])
def test_output_into_a_closed_pipe_exits_quietly(argv: list[str]) -> None:
    command = [sys.executable, "-m", "pushlang", *argv]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(10)
        proc.stdout.close()  # `| head -c 10`
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    assert code == 0
