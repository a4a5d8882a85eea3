"""The operator's REPL: campaigns, records and a virtual clock, one line at a time.

`Session` is the whole REPL without a terminal: it takes one input (a command, a `.push`
definition, or an expression) and writes what it has to say through ``out``. `run_interactive`
puts prompt-toolkit around it (highlighting, completion, history, Ctrl-C/Ctrl-D); `run_script`
reads a script from standard input for scripted use.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec

from pushlang import aio, ast, plan
from pushlang.compiler import compile_program
from pushlang.config import Config, find_config, load_config
from pushlang.diagnostics import Diagnostic, Sink
from pushlang.diagnostics.render import render_text
from pushlang.loader import LoadedFile, Loader, Program
from pushlang.runtime.campaigns import CompiledCampaign, UserHistory, compile_segments
from pushlang.runtime.engine import Engine
from pushlang.runtime.evaluate import MISSING, Compiler, Env
from pushlang.runtime.instants import US, iso, parse_datetime
from pushlang.runtime.outcomes import Output
from pushlang.runtime.preview import explain_now
from pushlang.runtime.records import (
    Event,
    InvalidRecord,
    Profile,
    Record,
    Reject,
    decode_record,
    open_records,
    read_records,
)
from pushlang.runtime.render import format_value
from pushlang.runtime.sqlite_store import open_store
from pushlang.runtime.store import MemoryStore, UserState
from pushlang.runtime.why import render_trace
from pushlang.source import Source, Span
from pushlang.syntax.keywords import (
    BEST_TIME_OPTIONS,
    DELIVER_MODES,
    KEYWORDS,
    LIMIT_PERIODS,
    THROTTLE_PERIODS,
    WHEN_ITEMS,
    WINNER_METRICS,
)
from pushlang.syntax.literals import DURATION_UNITS

COMMANDS: dict[str, tuple[str, str]] = {  # name: (arguments, what it does)
    ":load": ("PATH", "load a .push file or folder"),
    ":records": ("FILE", "feed a file of records (JSON Lines, .gz too)"),
    ":record": ("{json}", "feed one record"),
    ":advance": ("10m", "move the clock forward; due timers fire"),
    ":time": ("DATETIME", "move the clock to an instant"),
    ":user": ("ID", "show a user (and make them the current user)"),
    ":why": ("CAMPAIGN [USER]", "the decision pipeline for a user now, step by step"),
    ":preview": ("CAMPAIGN [USER]", "the message the user would get now"),
    ":reach": ("CAMPAIGN", "audience, reachable, platforms, control, holdout, variants"),
    ":plan": ("CAMPAIGN", "the campaign's checked plan"),
    ":decisions": ("[N]", "the last N decisions (default 10)"),
    ":lint": ("", "every diagnostic of what is loaded"),
    ":send-test": ("CAMPAIGN [USER]", "really send to the user (needs [vapid] in pushlang.toml)"),
    ":help": ("", "this list"),
    ":quit": ("", "leave (Ctrl-D too)"),
}
CAMPAIGN_FIRST = {":why", ":preview", ":reach", ":plan", ":send-test"}  # what Tab offers after each command
USER_SECOND = {":why", ":preview", ":send-test"}
PATH_FIRST = {":load", ":records"}
SHOWN_REJECTS = 3  # `:records` names this many rejected lines, then counts the rest
SHOWN_DECISIONS = 20  # `:records` lists the decisions it led to up to this many, else counts them
COMPLETED_USERS = 1000  # user ids Tab offers at most
_DEFINITION = re.compile(r"^\s*(campaign|segment|template|import)\b")
_EXPR_NAME = "__repl_expression"
_EXPR_PATH = "<expression>"
HISTORY_DAYS = 90  # how far back typed `did ...` expressions can look


class Quit(Exception):
    pass


def _braces(text: str) -> Iterator[tuple[int, str]]:
    """The `{` and `}` of ``text`` with their offsets, outside strings and comments."""
    quote, i = "", 0
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
        elif ch in "{}":
            yield i, ch
        i += 1


def braces_balanced(text: str) -> bool:
    """Whether a typed definition is complete: every `{` closed, ignoring strings and comments."""
    depth = 0
    for _, ch in _braces(text):
        depth += 1 if ch == "{" else -1
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
        self.failed = 0  # inputs that ended in an error (a script with any exits 1)
        self._held: list[Output] | None = None  # decisions held back while a file of records is fed
        if not self._recompile(show_from=None):  # records and the clock work before any campaign does
            self._use(plan.Plan(plan.FORMAT_VERSION, (), {}, self.config.settings))

    # ---- compiling -------------------------------------------------------------------------------

    def _program(self, extra: tuple[str, str] | None = None) -> tuple[Program, Sink]:
        sink = Sink()
        loader = Loader(sink)
        if self.paths:
            loader.load_roots(self.paths)
        typed = [*self.chunks, *([extra] if extra else [])]
        for name, text in typed:
            loader.load_text(name, text)
        _replace_redefined(loader.program, [name for name, _ in typed])
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
        if self._held is not None:
            self._held.append(out)
        else:
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
            self._fail(f"error: {exc}")
        except (OverflowError, RecursionError) as exc:  # a clock past year 9999, an input nested too deeply
            self._fail(f"error: out of range ({exc or type(exc).__name__}): the session goes on")

    def _fail(self, text: str) -> None:
        self.failed += 1
        self.out(text)

    def _define(self, text: str) -> None:
        self._typed += 1
        name = f"<input {self._typed}>"
        compiled, diagnostics, program = self._compile((name, text))
        mine = [d for d in diagnostics if d.path == name]
        if mine:
            self.out(render_text(mine, program.sources))
        if compiled is None:
            self._fail("not loaded: fix the errors above and type it again")
            return
        before, _ = self._program()
        known = {key for f in before.files.values() for key in _definitions(f)}
        typed = _definitions(program.files[next(k for k, f in program.files.items() if f.source.path == name)])
        self.chunks.append((name, text))
        # a typed definition that every later one replaced is dropped: the session does not grow with retyping
        later: set[tuple[str, str]] = set()
        kept: list[tuple[str, str]] = []
        for chunk in reversed(self.chunks):
            keys = set(re.findall(r"^\s*(campaign|segment|template)\s+(\w+)", chunk[1], re.MULTILINE))
            if chunk[0] == name or not keys or not keys <= later:
                kept.append(chunk)
            later |= keys
        self.chunks = kept[::-1]
        self._use(compiled)
        words = [f"{'replaced' if key in known else 'loaded'} {key[0]} {key[1]}" for key in typed]
        self.out(", ".join(words) if words else "loaded")

    def _expression(self, text: str) -> None:
        if self.user is None:
            raise ValueError("no current user: `:user ID` first")
        # compiled as a segment whose body is the expression alone on line 2; what is said about it
        # is said about the expression (line 1 of `<expression>`), never about the wrapper around it
        chunk = (_EXPR_PATH, f"segment {_EXPR_NAME} {{\n{text}\n}}\n")
        compiled, diagnostics, _ = self._compile(chunk)
        mine = [_about_expression(d, text) for d in diagnostics if d.path == _EXPR_PATH]
        if mine:
            shown = render_text(mine, {_EXPR_PATH: Source(_EXPR_PATH, text)})
            if compiled is None:
                self._fail(shown)
                return
            self.out(shown)
        if compiled is None:
            self._fail("error: the expression does not compile")
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
        width = max(len(f"{name} {args}") for name, (args, _) in COMMANDS.items()) + 2
        self.out("\n".join(f"{name} {args}".ljust(width) + what for name, (args, what) in COMMANDS.items())
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
            self._fail(f"not loaded: {arg} has errors")
            return
        assert self.plan is not None
        self.out(f"loaded {arg}: {len(self.plan.campaigns)} campaigns, {len(self.plan.segments)} segments in all")

    def cmd_lint(self, arg: str) -> None:
        _, diagnostics, program = self._compile()
        self.out(render_text(diagnostics, program.sources) if diagnostics else "no problems")

    def cmd_records(self, arg: str) -> None:
        """Feed a file of records (``.gz`` read compressed): a summary line, the first rejected lines,
        the decisions it led to (counted by outcome when there are many; `:decisions` lists them)."""
        if not arg:
            raise ValueError("`:records` takes a file of records (JSON Lines, or .gz)")
        rejects: list[Reject] = []
        count = 0
        self._held = []
        try:
            with open_records(arg) as handle:
                for record in read_records(handle, rejects):
                    self._feed(record)
                    count += 1
        except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated .gz, a read error
            broken = "truncated" if isinstance(exc, EOFError) else str(exc) or type(exc).__name__
            self.failed += 1
            self.out(f"error: {arg} could not be read to the end ({broken}); what came before was fed")
        finally:
            held, self._held = self._held, None
        if len(held) <= SHOWN_DECISIONS:
            for out in held:
                self.out(_describe(out))
        else:
            outcomes: dict[str, int] = {}
            for out in held:
                outcomes[out.outcome] = outcomes.get(out.outcome, 0) + 1
            self.out(f"{len(held):,} decisions (" + ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items()))
                     + "); `:decisions N` lists the last N")
        line = f"{count:,} records fed, clock {iso(self.clock)}"
        if rejects:
            line += f"; {len(rejects):,} lines rejected"
            line += "".join(f"\n  line {r.line}: {r.reason}" for r in rejects[:SHOWN_REJECTS])
            if len(rejects) > SHOWN_REJECTS:
                line += f"\n  … and {len(rejects) - SHOWN_REJECTS:,} more"
        self.out(line)

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
        sent = [d for d in self.decisions if d.user == arg and d.outcome == "send"]
        if sent:
            lines.append(f"  pushes sent in this session: {len(sent)}, the last {sent[-1].at} ({sent[-1].campaign})")
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
        compiled = engine.by_id[campaign]
        c = compiled.plan
        state = self.store.get(user)
        event = _last_trigger(compiled, state) if c.is_live and state is not None else None
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
        if c.best_time is not None and state is not None:
            heading += "".join(f"\n{line}" for line in self._best_time_lines(engine, compiled, state, found.again))
        self.out(render_trace(found, heading=heading))

    def _best_time_lines(self, engine: Engine, c: CompiledCampaign, state: UserState, again: bool) -> list[str]:
        """For `:why` of a best-time campaign (SPEC §12.6): the user's 24 scores and chosen k as the engine
        would choose them at an occurrence now (unless a delayed send is decided again), and each decision
        of theirs already waiting for its s + k."""
        from pushlang.runtime.best_choice import choice_for, occurrence_now
        from pushlang.runtime.instants import HOUR
        from pushlang.runtime.pipeline import user_zone

        lines = []
        choice = None
        if not again:
            date, schedule_zone = occurrence_now(c, user_zone(c, state), engine.clock)
            choice = choice_for(engine.store, c, state, engine.clock, date, schedule_zone)
            lines.append(f"at an occurrence now (s = {iso(choice.s)}):")
            lines.extend(f"  {line}" for line in choice.words().splitlines())
        for timer in engine.store.pending_timers(state.user):
            if timer.campaign == c.id and timer.kind == "best":
                s = timer.payload["s"]
                lines.append(f"waiting: the occurrence at s = {iso(s)} decides this user at their best time, "
                             f"s + k = {iso(timer.due)} (k = {(timer.due - s) // HOUR}); the decision waits for it")
        if choice is not None:
            lines.append("the steps, decided at s (k = 0):" if not choice.k else
                         f"the steps as if decided now (the engine decides at s + k = {iso(choice.at)}):")
        return lines

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
        """What Tab completes in a definition or an expression: keywords, names, events and properties."""
        names: list[str] = list(KEYWORDS)
        if self.plan is not None:
            names += [s for s in self.plan.segments if s != _EXPR_NAME]
        names += [f'"{e}"' for e in sorted(self.event_names)]
        names += sorted(self.properties)
        return list(dict.fromkeys(names))

    def user_ids(self) -> list[str]:
        ids = self.store.user_ids()
        return sorted(ids)[:COMPLETED_USERS] if len(ids) > COMPLETED_USERS else sorted(ids)

    def completions(self, before: str, earlier: str = "") -> tuple[str, list[str]]:
        """Tab for the text before the cursor: the word being typed and what may complete it —
        commands at the start of a line, campaign ids and user ids where a command takes them, files
        after `:load` and `:records`; in a definition or an expression, :func:`text_completions` with
        this session's words. ``earlier``: the lines typed before this one in an unfinished definition."""
        parts = before.split(" ")
        word, done = parts[-1], [p for p in parts[:-1] if p]
        if done and done[0].startswith(":") and before.lstrip().startswith(":"):
            command, position = done[0], len(done)
            campaigns = [c.id for c in self.plan.campaigns] if self.plan is not None else []
            if command in CAMPAIGN_FIRST and position == 1:
                candidates = campaigns
            elif (command in USER_SECOND and position == 2) or (command == ":user" and position == 1):
                candidates = self.user_ids()
            elif command in PATH_FIRST and position == 1:
                candidates = _paths(word)
            else:
                candidates = []
        elif not done and word.startswith(":"):
            candidates = list(COMMANDS)
        else:
            return text_completions(before, earlier, self.words)
        return word, [c for c in candidates if c.startswith(word) and c != word]


def text_completions(before: str, earlier: str, words: Callable[[], list[str]]) -> tuple[str, list[str]]:
    """Tab in `.push` text (the REPL's definitions, an editor's file through `pushlang lsp`): the word
    being typed and what may complete it, by context — the items of a `when` block at the start of one
    of its lines, the rest of a `deliver` item there (`in user timezone`, `at best time`, then
    `between … and …` and `by`), periods after `per`, the words of
    `test P% then winner by clicks|conversions after D` one after the other, `then` and `else` of an
    open `if`, else ``words()`` (keywords, names, events and properties; not on an empty word: every
    keyword is no help). ``earlier``: the lines before this one in an unfinished definition."""
    parts = before.split(" ")
    word, done = parts[-1], [p for p in parts[:-1] if p]
    if done and done[-1] == "per":
        item = done[0] if done[0] != "{" else done[1] if len(done) > 1 else ""
        candidates = list(THROTTLE_PERIODS if item == "throttle" else LIMIT_PERIODS if item == "limit"
                          else LIMIT_PERIODS + THROTTLE_PERIODS)
    elif "test" in done and done[::-1].index("test") + 1 in _AFTER_TEST:
        candidates = list(_AFTER_TEST[done[::-1].index("test") + 1])
    elif not word and (after_if := _if_next(done)) is not None:
        candidates = [after_if]
    elif (not done or done[-1] == "{") and open_blocks(f"{earlier}\n{before}")[-1:] == ["when"]:
        candidates = list(WHEN_ITEMS)
    elif ((after_deliver := _deliver_next(done)) is not None
          and open_blocks(f"{earlier}\n{before}")[-1:] == ["when"]):
        candidates = after_deliver
    elif not word:
        candidates = []
    else:
        candidates = words()
    return word, [c for c in candidates if c.startswith(word) and c != word]


def _deliver_next(done: list[str]) -> list[str] | None:
    """What follows in a `deliver` item of `when` (the words typed so far): the rest of `in user timezone`
    or `at best time`, then `between` and `by`, `and` between the window's times, `by` after the window;
    an empty list where a time goes; None outside a `deliver` item and among the events after `by`."""
    words = done[len(done) - done[::-1].index("{"):] if "{" in done else done
    if words[:1] != ["deliver"]:
        return None
    rest = words[1:]
    phrases = [mode.split() for mode in DELIVER_MODES]
    started = [" ".join(p[len(rest):]) for p in phrases if len(rest) < len(p) and p[:len(rest)] == rest]
    if started:
        return started
    best = next(p for p in phrases if "best" in p)  # at best time
    if rest[:len(best)] != best:
        return None
    options = rest[len(best):]  # `between HH:MM and HH:MM`, then `by "E", …`
    if "by" in options:
        return None
    return {0: list(BEST_TIME_OPTIONS), 1: [], 2: ["and"], 3: [], 4: ["by"]}.get(len(options), [])


# What comes next in `test 10% then winner by clicks after 4h`, by how many words there are from `test` on.
_AFTER_TEST: dict[int, tuple[str, ...]] = {2: ("then",), 3: ("winner",), 4: ("by",), 5: WINNER_METRICS, 6: ("after",)}


# Words after which an operand must come, so neither `then` nor `else` can.
_WANTS_OPERAND = frozenset({"if", "then", "else", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "and",
                            "or", "not", "in", "contains", "starts", "ends", "with", "exists", "where"})


def _if_next(done: list[str]) -> str | None:
    """`then` after the condition of an open `if`, `else` after its `then` branch (words typed so far,
    a personalisation's `"@{` or a `(` before a word left out); None elsewhere."""
    words = [w.lstrip("\"'@{([") for w in done]
    expecting: list[str] = []
    for w in words:
        if w == "if":
            expecting.append("then")
        elif expecting and w == expecting[-1] == "then":
            expecting[-1] = "else"
        elif expecting and w == expecting[-1] == "else":
            expecting.pop()
    if not expecting or not words or words[-1] in _WANTS_OPERAND:
        return None
    return expecting[-1]


def open_blocks(text: str) -> list[str]:
    """The blocks still open at the end of ``text``, outermost first, each named by the word before
    its `{` (`when`, `who`, `message`, a campaign's id...); strings and comments are skipped."""
    opened: list[str] = []
    for i, ch in _braces(text):
        if ch == "{":
            words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text[max(0, text.rfind("\n", 0, i)):i])
            opened.append(words[-1] if words else "")
        elif opened:
            opened.pop()
    return opened


def _paths(word: str) -> list[str]:
    """Files and folders whose path starts with ``word`` (folders end in /)."""
    folder, _, stem = word.rpartition("/")
    base = Path(folder or ".")
    try:
        entries = sorted(base.iterdir()) if base.is_dir() else []
    except OSError:
        return []
    return [(f"{folder}/" if folder else "") + e.name + ("/" if e.is_dir() else "")
            for e in entries if e.name.startswith(stem) and not e.name.startswith(".")]


def _last_trigger(c: CompiledCampaign, state: UserState) -> Event | None:
    """The user's latest event that triggers the campaign, as the engine saw it (its `where` true, inside
    the campaign's [start, end)): the same trigger `preview` tells the story of."""
    name = getattr(c.plan.trigger, "event", "")
    history = UserHistory(state)
    for ts, props in reversed(state.history.get(name, [])):
        if c.arm_from <= ts < c.arm_until and \
                c.trigger_where(Env(state.user, state.profile, ts, history, c.segments, name, ts, props)):
            return Event(state.user, ts, name, props)
    return None


def _definitions(f: LoadedFile) -> list[tuple[str, str]]:
    """What a file defines, as (kind, name): campaigns, segments and templates each have their names."""
    found: list[tuple[str, str]] = []
    for item in f.module.items if f.module is not None else ():
        if isinstance(item, ast.CampaignDef):
            found.append(("campaign", item.id))
        elif isinstance(item, ast.SegmentDef):
            found.append(("segment", item.name))
        elif isinstance(item, ast.TemplateDef):
            found.append(("template", item.name))
    return found


def _replace_redefined(program: Program, typed: list[str]) -> None:
    """A definition typed later replaces one of the same kind and name loaded or typed before it: the
    earlier one is left out of the program (``typed``: the typed inputs' paths, in order)."""
    order = {name: i for i, name in enumerate(typed)}
    last: dict[tuple[str, str], int] = {}
    for f in program.files.values():
        if f.source.path in order:
            for key in _definitions(f):
                last[key] = max(last.get(key, -1), order[f.source.path])
    if not last:
        return
    for f in program.files.values():
        if f.module is None:
            continue
        mine = order.get(f.source.path, -1)
        defs = iter(_definitions(f))
        items = tuple(item for item in f.module.items
                      if not isinstance(item, (ast.CampaignDef, ast.SegmentDef, ast.TemplateDef))
                      or last.get(next(defs), -1) <= mine)
        if len(items) != len(f.module.items):
            f.module = msgspec.structs.replace(f.module, items=items)


def _about_expression(d: Diagnostic, text: str) -> Diagnostic:
    """A diagnostic of the wrapped expression told about the expression alone: line 2 of the wrapper is
    line 1; anything past it (the wrapper's closing brace) is the end of the expression."""
    span = d.span
    if span.line == 2 and span.end_line == 2:
        moved = Span(1, span.column, 1, span.end_column)
    elif span.line == 2:
        moved = Span(1, span.column, 1, len(text) + 1)
    else:
        end = len(text) + 1
        moved = Span(1, end, 1, end + 1)
    message = d.message.replace("unexpected `}`", "unexpected end of the expression") if span.line > 2 else d.message
    return msgspec.structs.replace(d, span=moved, message=message.replace(_EXPR_NAME, "the expression"))


def _describe(o: Output) -> str:
    parts = [o.at, o.campaign, o.user or "-", o.outcome]
    if o.reason:
        parts.append(o.reason)
    if o.until:
        parts.append(f"until {o.until}")
    if o.outcome == "send":
        parts.append(f'"{o.title}"')
    if o.revenue is not None:
        parts.append(f"revenue {o.revenue:g}")
    if o.variant is not None:
        parts.append(f"variant {o.variant}")
    if o.rates is not None:
        parts.append("rates " + ", ".join(f"{v} {r:g}" for v, r in o.rates.items())
                     + ("; significant" if o.significant else "; not significant"))
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
    """Non-interactive: every input of the script in turn; errors are printed and the script goes on.
    1 when any input ended in an error (so a script in CI fails), else 0."""
    try:
        for text in inputs(stream):
            session.handle(text)
    except Quit:
        pass
    return 1 if session.failed else 0


def run_interactive(session: Session) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import Completer, Completion
    from prompt_toolkit.document import Document
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.lexers import PygmentsLexer

    pending: list[str] = []  # the lines of an unfinished definition

    class Words(Completer):
        def get_completions(self, document: Document, complete_event: Any) -> Iterator[Completion]:
            word, candidates = session.completions(document.current_line_before_cursor, "\n".join(pending))
            for candidate in candidates:
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
    while True:
        try:
            line = prompt.prompt("...> " if pending else "push> ")
        except KeyboardInterrupt:
            pending.clear()  # Ctrl-C cancels the current input
            continue
        except EOFError:
            return 0
        pending.append(line)
        text = "\n".join(pending)
        if not braces_balanced(text):
            continue
        pending.clear()
        try:
            session.handle(text)
        except Quit:
            return 0
