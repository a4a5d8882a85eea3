"""The operator's REPL: campaigns, records and a virtual clock, one line at a time.

`Session` is the whole REPL without a terminal: it takes one input (a command, a `.push`
definition, or an expression) and writes what it has to say through ``out``. `run_interactive`
puts prompt-toolkit around it (highlighting, completion, history, Ctrl-C/Ctrl-D); `run_script`
reads a script from standard input for scripted use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec

from pushlang import aio, plan
from pushlang.compiler import compile_program
from pushlang.config import Config, find_config, load_config
from pushlang.diagnostics import Diagnostic, Sink
from pushlang.diagnostics.render import render_text
from pushlang.loader import Loader, Program
from pushlang.runtime.campaigns import UserHistory, compile_segments
from pushlang.runtime.engine import Engine, Output
from pushlang.runtime.evaluate import MISSING, Compiler, Env
from pushlang.runtime.instants import US, iso, parse_datetime
from pushlang.runtime.preview import explain_now
from pushlang.runtime.records import Event, InvalidRecord, Profile, Record, decode_record, read_records
from pushlang.runtime.render import format_value
from pushlang.runtime.sqlite_store import open_store
from pushlang.runtime.store import MemoryStore
from pushlang.runtime.why import render_trace
from pushlang.syntax.keywords import KEYWORDS
from pushlang.syntax.literals import DURATION_UNITS

COMMANDS = {
    ":load": "PATH            load a .push file or folder",
    ":records": "FILE         feed a file of records (JSON Lines)",
    ":record": "{json}         feed one record",
    ":advance": "10m          move the clock forward; due timers fire",
    ":time": "DATETIME         move the clock to an instant",
    ":user": "ID               show a user (and make them the current user)",
    ":why": "CAMPAIGN [USER]   the decision pipeline for a user now, step by step",
    ":preview": "CAMPAIGN [USER]  the message the user would get now",
    ":reach": "CAMPAIGN        audience, reachable, platforms, control",
    ":plan": "CAMPAIGN         the campaign's checked plan",
    ":decisions": "[N]        the last N decisions (default 10)",
    ":lint": "                 every diagnostic of what is loaded",
    ":send-test": "CAMPAIGN   really send to the current user (needs [vapid] in pushlang.toml)",
    ":help": "                 this list",
    ":quit": "                 leave (Ctrl-D too)",
}
_DEFINITION = re.compile(r"^\s*(campaign|segment|template|import)\b")
_EXPR_NAME = "__repl_expression"
HISTORY_DAYS = 90  # how far back typed `did ...` expressions can look


class Quit(Exception):
    pass


def braces_balanced(text: str) -> bool:
    """Whether a typed definition is complete: every `{` closed, ignoring strings and comments."""
    depth, quote, i = 0, "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote or ch == "\n":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        i += 1
    return depth <= 0


class Session:
    def __init__(self, paths: list[str] | None = None, *, store_url: str | None = None,
                 config_path: str | None = None, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.paths: list[str] = list(paths or [])
        self.chunks: list[tuple[str, str]] = []  # typed definitions that compiled: (name, text)
        self.config: Config = load_config(find_config(config_path, self.paths), Sink())
        self.store: MemoryStore = open_store(store_url)
        self.plan: plan.Plan | None = None
        self.engine: Engine | None = None
        self.user: str | None = None
        self.decisions: list[Output] = []
        self.last_events: dict[tuple[str, str], Event] = {}  # (user, event name) → the latest
        self.event_names: set[str] = set()
        self.properties: set[str] = set()
        self._typed = 0
        if not self._recompile(show_from=None):  # records and the clock work before any campaign does
            self._use(plan.Plan(plan.FORMAT_VERSION, (), {}, self.config.settings))

    # ---- compiling -------------------------------------------------------------------------------

    def _program(self, extra: tuple[str, str] | None = None) -> tuple[Program, Sink]:
        sink = Sink()
        loader = Loader(sink)
        if self.paths:
            loader.load_roots(self.paths)
        for name, text in [*self.chunks, *([extra] if extra else [])]:
            loader.load_text(name, text)
        return loader.program, sink

    def _compile(self, extra: tuple[str, str] | None = None) -> tuple[plan.Plan | None, list[Diagnostic], Program]:
        program, sink = self._program(extra)
        compiled = compile_program(program, self.config, None, sink)
        return compiled, sink.sorted(), program

    def _recompile(self, show_from: str | None) -> bool:
        compiled, diagnostics, program = self._compile()
        shown = [d for d in diagnostics if show_from is None or d.path == show_from]
        if shown:
            self.out(render_text(shown, program.sources))
        if compiled is None:
            return False
        self._use(compiled)
        return True

    def _use(self, compiled: plan.Plan) -> None:
        self.plan = compiled
        self.engine = Engine(compiled, self.store, self._decided, keep_history=HISTORY_DAYS * 86400 * US)

    def _decided(self, out: Output) -> None:
        self.decisions.append(out)
        self.out(_describe(out))

    # ---- input -----------------------------------------------------------------------------------

    def handle(self, text: str) -> None:
        """One complete input: a command, a definition, or an expression for the current user."""
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            return
        try:
            if stripped.startswith(":"):
                name, _, rest = stripped.partition(" ")
                self._command(name, rest.strip())
            elif _DEFINITION.match(stripped):
                self._define(text)
            else:
                self._expression(stripped)
        except Quit:
            raise
        except (ValueError, KeyError, OSError) as exc:
            self.out(f"error: {exc}")

    def _define(self, text: str) -> None:
        self._typed += 1
        name = f"<input {self._typed}>"
        compiled, diagnostics, program = self._compile((name, text))
        mine = [d for d in diagnostics if d.path == name]
        if mine:
            self.out(render_text(mine, program.sources))
        if compiled is None:
            self.out("not loaded: fix the errors above and type it again")
            return
        self.chunks.append((name, text))
        self._use(compiled)
        defined = re.findall(r"^\s*(campaign|segment|template)\s+(\w+)", text, re.MULTILINE)
        self.out("loaded " + ", ".join(f"{kind} {ident}" for kind, ident in defined) if defined else "loaded")

    def _expression(self, text: str) -> None:
        if self.user is None:
            raise ValueError("no current user: `:user ID` first")
        chunk = (f"<expression {self._typed + 1}>", f"segment {_EXPR_NAME} {{\n  {text}\n}}\n")
        compiled, diagnostics, program = self._compile(chunk)
        mine = [d for d in diagnostics if d.path == chunk[0]]
        if mine:
            self.out(render_text(mine, program.sources))
        if compiled is None:
            return
        state = self.store.get(self.user)
        if state is None:
            raise ValueError(f"no record of user {self.user} yet")
        tz = compiled.settings.timezone
        fn = Compiler(tz).compile(compiled.segments[_EXPR_NAME])
        value = fn(Env(state.user, state.profile, self.clock, UserHistory(state), compile_segments(compiled, tz)))
        self.out("missing" if value is MISSING else format_value(value))

    # ---- commands --------------------------------------------------------------------------------

    @property
    def clock(self) -> int:
        return self.engine.clock if self.engine is not None else int(self.store.meta("clock", 0))

    def _engine(self) -> Engine:
        if self.engine is None:
            raise ValueError("nothing is loaded that compiles: `:load PATH` or type a campaign")
        return self.engine

    def _command(self, name: str, arg: str) -> None:
        handler = getattr(self, "cmd_" + name[1:].replace("-", "_"), None)
        if handler is None:
            from pushlang.diagnostics.sink import did_you_mean

            hint = did_you_mean(name, COMMANDS)
            raise ValueError(f"unknown command {name}" + (f"; {hint}" if hint else "; `:help` lists them"))
        handler(arg)

    def cmd_help(self, arg: str) -> None:
        self.out("\n".join(f"{name} {usage}" for name, usage in COMMANDS.items())
                 + "\nType a campaign, segment or template to load it (multi-line until the braces close), "
                   "or an expression to evaluate it for the current user.")

    def cmd_quit(self, arg: str) -> None:
        raise Quit()

    def cmd_load(self, arg: str) -> None:
        if not arg or not Path(arg).exists():
            raise ValueError(f"no such file or folder: {arg or '(none given)'}")
        self.paths.append(arg)
        if not self._recompile(show_from=None):
            self.paths.pop()
            self.out(f"not loaded: {arg} has errors")
            return
        assert self.plan is not None
        self.out(f"loaded {arg}: {len(self.plan.campaigns)} campaigns, {len(self.plan.segments)} segments in all")

    def cmd_lint(self, arg: str) -> None:
        _, diagnostics, program = self._compile()
        self.out(render_text(diagnostics, program.sources) if diagnostics else "no problems")

    def cmd_records(self, arg: str) -> None:
        from pushlang.runtime.records import Reject

        rejects: list[Reject] = []
        with open(arg, "rb") as handle:
            count = 0
            for record in read_records(handle, rejects):
                self._feed(record)
                count += 1
        self.out(f"{count} records fed, clock {iso(self.clock)}"
                 + "".join(f"\n  line {r.line} rejected: {r.reason}" for r in rejects))

    def cmd_record(self, arg: str) -> None:
        try:
            record = decode_record(arg)
        except InvalidRecord as exc:
            raise ValueError(f"not a record: {exc}") from None
        self._feed(record)

    def _feed(self, record: Record) -> None:
        self._engine().feed(record)
        if isinstance(record, Event):
            self.last_events[(record.user, record.name)] = record
            self.event_names.add(record.name)
            self.properties.update(f"event.{k}" for k in record.props)
        elif isinstance(record, Profile):
            self.properties.update(f"user.{k}" for k in record.props)
        if self.user is None:
            self.user = record.user

    def cmd_advance(self, arg: str) -> None:
        m = re.fullmatch(r"(\d+)([smhdw])", arg)
        if m is None:
            raise ValueError("`:advance` takes a duration like 45s, 10m, 2h, 1d or 1w")
        self._move_to(self.clock + int(m.group(1)) * DURATION_UNITS[m.group(2)] * US)

    def cmd_time(self, arg: str) -> None:
        if not arg:
            raise ValueError("`:time` takes a date-time like 2026-12-01T09:00:00Z")
        at = parse_datetime(arg, self.config.settings.timezone, "`:time`")
        if at < self.clock:
            raise ValueError(f"the clock only moves forward (it is {iso(self.clock)})")
        self._move_to(at)

    def _move_to(self, at: int) -> None:
        engine = self._engine()
        engine.advance(at, inclusive=True)
        self.out(f"clock {iso(engine.clock)}")

    def cmd_user(self, arg: str) -> None:
        if not arg:
            raise ValueError("`:user ID`")
        self.user = arg
        state = self.store.get(arg)
        if state is None:
            self.out(f"user {arg}: no record yet (current user now)")
            return
        lines = [f"user {arg} (first seen {iso(state.first_seen)})",
                 f"  profile: {msgspec.json.encode(state.profile).decode()}"]
        for sub in state.subscriptions.values():
            lines.append(f"  subscription: {sub.platform} {'active' if sub.active else 'inactive'} "
                         f"{sub.endpoint or 'device token'}")
        for name, events in sorted(state.history.items()):
            lines.append(f"  events {name}: {len(events)}, latest {iso(events[-1][0])}" if events else "")
        for timer in self.store.pending_timers(arg):
            lines.append(f"  timer {timer.kind} {timer.campaign} due {iso(timer.due)}")
        for key, count in sorted(state.counters.items()):
            lines.append(f"  sent {count} ({key.replace('|', ' in ')})")
        self.out("\n".join(line for line in lines if line))

    def _campaign(self, arg: str) -> plan.Campaign:
        ids = ", ".join(c.id for c in self.plan.campaigns) if self.plan else ""
        word = arg.split()[0] if arg.split() else ""
        found = self.plan.campaign(word) if self.plan else None
        if found is None:
            raise ValueError((f"no campaign `{word}`" if word else "which campaign?")
                             + (f"; the ids: {ids}" if ids else "; none is loaded"))
        return found

    def _campaign_and_user(self, arg: str) -> tuple[str, str]:
        campaign = self._campaign(arg)
        parts = arg.split()
        user = parts[1] if len(parts) > 1 else self.user
        if user is None:
            raise ValueError("which user? `:user ID` or give it after the campaign")
        return campaign.id, user

    def cmd_why(self, arg: str) -> None:
        """The campaign's steps for the user at the clock (the engine's own, changing nothing): a delayed
        send of theirs decided again, or a new decision with their last triggering event."""
        campaign, user = self._campaign_and_user(arg)
        engine = self._engine()
        c = engine.by_id[campaign].plan
        event = self.last_events.get((user, getattr(c.trigger, "event", ""))) if c.is_live else None
        found = explain_now(engine, campaign, user, event)
        if found is None:
            raise ValueError(f"no record of user {user} yet")
        last = next((d for d in reversed(self.decisions)
                     if d.campaign == campaign and d.user == user and d.outcome not in ("viewed", "clicked")), None)
        heading = f"campaign {campaign}, user {user}, now {iso(engine.clock)}"
        if found.again:
            heading += " (a delayed send, decided again)"
        elif c.is_live:
            heading += f" (trigger: {event.name} at {iso(event.ts)})" if event is not None else " (no trigger yet)"
        if last is not None:
            heading += f"\nlast decision: {_describe(last)}"
        self.out(render_trace(found, heading=heading))

    cmd_preview = cmd_why

    def cmd_reach(self, arg: str) -> None:
        from pushlang.runtime.reach import count_reach
        from pushlang.runtime.reach import render_text as render_reach

        assert self.plan is not None
        self.out(render_reach(count_reach(self.plan, self._campaign(arg), self.store, self.clock)))

    def cmd_plan(self, arg: str) -> None:
        self.out(msgspec.json.format(msgspec.json.encode(self._campaign(arg)), indent=2).decode())

    def cmd_decisions(self, arg: str) -> None:
        n = int(arg) if arg.isdigit() else 10
        shown = self.decisions[-n:]
        self.out("\n".join(_describe(d) for d in shown) if shown else "no decisions yet")

    def cmd_send_test(self, arg: str) -> None:

        from pushlang.dispatch.dispatcher import DeliverySettings, Dispatcher
        from pushlang.dispatch.send_test import test_jobs

        campaign, user = self._campaign_and_user(arg)
        settings = DeliverySettings.from_config(self.config)
        if settings.problems():
            raise ValueError("delivery is not configured: " + "; ".join(settings.problems()))
        assert self.plan is not None
        last = {u: e for (u, _), e in self.last_events.items() if u == user}
        jobs, problems = test_jobs(self.plan, self.store, campaign, [user], last, self.clock)
        for line in problems:
            self.out(f"✗ {line}")

        async def deliver() -> list[Any]:
            async with Dispatcher(settings, self.plan.settings.default_ttl if self.plan else 0) as d:
                return list(await d.deliver(jobs))

        for job, sub, result in aio.run(deliver()) if jobs else []:
            self.out(f"{'✓' if result.delivered else '✗'} {job.user} {sub.platform}: "
                     f"{'delivered' if result.delivered else 'failed'} (status {result.status})"
                     + (f": {result.reason}" if result.reason else ""))

    # ---- completion ------------------------------------------------------------------------------

    def words(self) -> list[str]:
        """What Tab can complete: commands, keywords, names, events and properties seen so far."""
        names: list[str] = list(COMMANDS)
        names += list(KEYWORDS)
        if self.plan is not None:
            names += [c.id for c in self.plan.campaigns]
            names += [s for s in self.plan.segments if s != _EXPR_NAME]
        names += [f'"{e}"' for e in sorted(self.event_names)]
        names += sorted(self.properties)
        return list(dict.fromkeys(names))


def _describe(o: Output) -> str:
    parts = [o.at, o.campaign, o.user, o.outcome]
    if o.reason:
        parts.append(o.reason)
    if o.until:
        parts.append(f"until {o.until}")
    if o.outcome == "send":
        parts.append(f'"{o.title}"')
    if o.revenue is not None:
        parts.append(f"revenue {o.revenue:g}")
    return "  ".join(parts)


# ---- hosts -------------------------------------------------------------------------------------


def inputs(lines: Iterable[str]) -> Iterator[str]:
    """Lines grouped into complete inputs: a definition goes on until its braces balance."""
    pending: list[str] = []
    for line in lines:
        pending.append(line.rstrip("\n"))
        text = "\n".join(pending)
        if braces_balanced(text):
            yield text
            pending = []
    if pending:
        yield "\n".join(pending)


def run_script(session: Session, stream: TextIO) -> int:
    """Non-interactive: every input of the script in turn; errors are printed and the script goes on."""
    try:
        for text in inputs(stream):
            session.handle(text)
    except Quit:
        pass
    return 0


def run_interactive(session: Session) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import Completer, Completion
    from prompt_toolkit.document import Document
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.lexers import PygmentsLexer

    class Words(Completer):
        def get_completions(self, document: Document, complete_event: Any) -> Iterator[Completion]:
            word = document.get_word_before_cursor(WORD=True)
            for candidate in session.words():
                if word and candidate.startswith(word) and candidate != word:
                    yield Completion(candidate, start_position=-len(word))

    try:
        from pushlang.highlight import PushLexer

        lexer: Any = PygmentsLexer(PushLexer)
    except ImportError:
        lexer = None
    history_file = Path.home() / ".pushlang_history"
    prompt: PromptSession[str] = PromptSession(history=FileHistory(str(history_file)), lexer=lexer,
                                               completer=Words(), complete_while_typing=False)
    session.out("pushlang REPL — :help for commands, Ctrl-D to leave")
    pending: list[str] = []
    while True:
        try:
            line = prompt.prompt("...> " if pending else "push> ")
        except KeyboardInterrupt:
            pending = []  # Ctrl-C cancels the current input
            continue
        except EOFError:
            return 0
        pending.append(line)
        text = "\n".join(pending)
        if not braces_balanced(text):
            continue
        pending = []
        try:
            session.handle(text)
        except Quit:
            return 0
