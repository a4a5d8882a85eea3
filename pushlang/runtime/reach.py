"""`pushlang reach`: how many users a campaign's audience holds and how many of them it can reach.

Over the SQLite store the audience is counted in SQL (DESIGN.md "Embedded default: SQLite"): the
``who`` expression, with its segments inlined, becomes one WHERE clause over ``users`` and
``profiles``, and each ``did`` a correlated subquery that the ``(user_id, name, ts)`` index answers.
The translation keeps SPEC §6 exactly (a missing property or a value of another type makes a
comparison false, ``not`` makes it true); whatever it cannot translate with certainty (functions,
arithmetic, date-times, ``trigger.*``, two properties compared) makes the whole count fall back to
evaluating the compiled closures user by user, and the output says which path was used.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from pushlang import plan
from pushlang.runtime.engine import in_control_group
from pushlang.runtime.evaluate import Compiler, Env, Fn, History, compare, membership
from pushlang.runtime.instants import US, from_local, iso, parse_instant
from pushlang.runtime.store import MemoryStore, UserState

COUNTED_IN_SQL = "counted in SQL"

_INT64 = (-(2**63), 2**63 - 1)
_MIRROR = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SQL_OP = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_COMPARISONS = frozenset(_SQL_OP)
_MEMBERSHIP = frozenset({"in", "not in", "contains", "starts with", "ends with"})


# ---- the result --------------------------------------------------------------------------------


@dataclass
class Reach:
    """The numbers of one campaign at one instant, and how they were counted."""

    campaign: str
    name: str
    at: int
    known_users: int
    audience: int
    reachable: int
    by_platform: dict[str, int]  # every platform counted, in PLATFORMS order; a user once per platform
    control: int
    control_percent: float
    method: str  # "sql" | "per_user"
    counted: str  # COUNTED_IN_SQL, or "evaluated per user: <reason>"
    notes: list[str] = field(default_factory=list)

    def numbers(self) -> dict[str, Any]:
        """What two ways of counting must agree on."""
        return {"known_users": self.known_users, "audience": self.audience, "reachable": self.reachable,
                "by_platform": self.by_platform, "control": self.control}

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "name": self.name,
            "at": iso(self.at),
            "known_users": self.known_users,
            "audience": self.audience,
            "audience_share": _share(self.audience, self.known_users),
            "reachable": self.reachable,
            "reachable_share": _share(self.reachable, self.known_users),
            "by_platform": self.by_platform,
            "control": self.control,
            "control_percent": self.control_percent,
            "method": self.method,
            "counted": self.counted,
            "notes": self.notes,
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# ---- counting ----------------------------------------------------------------------------------


def count_reach(compiled: plan.Plan, campaign: plan.Campaign, store: MemoryStore, at: int, *,
                per_user: bool = False) -> Reach:
    """Count ``campaign``'s reach at ``at`` over ``store`` (committed): in SQL when the store is SQLite
    and the audience translates (unless ``per_user``), else user by user."""
    from pushlang.runtime.sqlite_store import SqliteStore

    reason = "per_user was asked for" if per_user else "the in-memory store has no SQL (count a --store sqlite:///FILE in SQL)"
    if not per_user and isinstance(store, SqliteStore):
        if store.path in ("", ":memory:") or store.path.startswith("file:"):
            reason = "the SQLite store is not a plain file that a second, read-only connection can open"
        else:
            try:
                query = AudienceQuery(compiled, campaign, at)
            except Untranslatable as exc:
                reason = str(exc)
            else:
                return _count_sql(Path(store.path), campaign, at, query)
    return _count_per_user(compiled, campaign, store, at, f"evaluated per user: {reason}")


def channels(campaign: plan.Campaign) -> tuple[str, ...]:
    """The platforms a send can go to: the campaign's, without Safari when the message has no url."""
    if campaign.message.url is None:
        return tuple(p for p in campaign.platforms if p != "safari")
    return campaign.platforms


class _History(History):
    __slots__ = ("state",)

    def __init__(self, state: UserState) -> None:
        self.state = state

    def events(self, name: str) -> list[tuple[int, dict[str, Any]]]:
        return self.state.history.get(name, [])


class _Segments(dict[str, Fn]):
    """Compiled segments; a segment with no conditions is not in the plan and holds for everyone."""

    def __missing__(self, key: str) -> Fn:
        return lambda env: True


def _count_per_user(compiled: plan.Plan, campaign: plan.Campaign, store: MemoryStore, at: int,
                    counted: str) -> Reach:
    compiler = Compiler(campaign.timezone)
    segments = _Segments({name: compiler.compile(expr) for name, expr in compiled.segments.items()})
    audience = compiler.condition(campaign.audience)
    allowed = channels(campaign)
    known = members = reachable = control = 0
    by_platform = dict.fromkeys(allowed, 0)
    for user in store.user_ids():
        state = store.get(user)
        if state is None or state.first_seen > at:
            continue
        known += 1
        if not audience(Env(user, state.profile, at, _History(state), segments)):
            continue
        members += 1
        platforms = {s.platform for s in state.subscriptions.values() if s.active and s.platform in allowed}
        if not platforms:
            continue
        reachable += 1
        for platform in platforms:
            by_platform[platform] += 1
        if campaign.control_percent and in_control_group(campaign.id, user, campaign.control_percent):
            control += 1
    return Reach(campaign.id, campaign.name, at, known, members, reachable, by_platform, control,
                 campaign.control_percent, "per_user", counted)


def _count_sql(path: Path, campaign: plan.Campaign, at: int, query: AudienceQuery) -> Reach:
    allowed = channels(campaign)
    params = dict(query.params)
    names = []
    for i, platform in enumerate(allowed):
        params[f"platform{i}"] = platform
        names.append(f":platform{i}")
    platform_filter = f"s.platform IN ({', '.join(names)})" if names else "0"
    in_control = "pushlang_in_control(user_id)" if campaign.control_percent else "0"
    sql = f"""
        WITH audience AS ({query.sql}),
        channels AS (
          SELECT DISTINCT s.user_id, s.platform
          FROM audience a JOIN subscriptions s ON s.user_id = a.user_id
          WHERE s.active = 1 AND {platform_filter}
        ),
        reachable AS (SELECT DISTINCT user_id FROM channels)
        SELECT 'known', NULL, count(*) FROM users WHERE first_seen <= :at
        UNION ALL SELECT 'audience', NULL, count(*) FROM audience
        UNION ALL SELECT 'reachable', NULL, count(*) FROM reachable
        UNION ALL SELECT 'control', NULL, count(*) FROM reachable WHERE {in_control}
        UNION ALL SELECT 'platform', platform, count(*) FROM channels GROUP BY platform
    """
    # Read-only: counting never changes the store, and WAL lets it read beside the store's writer.
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        if campaign.control_percent:
            cid, percent = campaign.id, campaign.control_percent
            db.create_function("pushlang_in_control", 1,
                               lambda user: in_control_group(cid, user, percent), deterministic=True)
        totals: dict[str, int] = {}
        by_platform = dict.fromkeys(allowed, 0)
        for kind, platform, n in db.execute(sql, params):
            if kind == "platform":
                by_platform[platform] = n
            else:
                totals[kind] = n
    finally:
        db.close()
    return Reach(campaign.id, campaign.name, at, totals["known"], totals["audience"], totals["reachable"],
                 by_platform, totals["control"], campaign.control_percent, "sql", COUNTED_IN_SQL)


# ---- the audience as SQL -----------------------------------------------------------------------


class Untranslatable(Exception):
    """A part of the audience that SQL cannot evaluate exactly as SPEC §6 does; the message says which."""


@dataclass(frozen=True)
class _Term:
    """A value in SQL: ``typ`` is its JSON type ('text', 'integer', 'real', 'true', 'false', 'null',
    'array', 'object'; SQL NULL when missing), ``val`` the value (booleans as 1/0). ``json`` and
    ``path`` name where it lives when it is a property, for ``json_each`` over arrays."""

    typ: str
    val: str
    json: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class _Const:
    value: Any  # a string, number, boolean, None, or a list of those


class _Missing:
    pass


_MISSING_VALUE = _Missing()
_Operand = _Term | _Const | _Missing | plan.ListOf


class AudienceQuery:
    """``SELECT u.user_id`` of the known users at ``at`` for whom the campaign's ``who`` holds.

    Raises :class:`Untranslatable` when some node has no exact SQL translation. ``sql`` uses named
    parameters, all in ``params``: the instant is ``:at``.
    """

    def __init__(self, compiled: plan.Plan, campaign: plan.Campaign, at: int) -> None:
        self.segments = compiled.segments
        self.params: dict[str, Any] = {"at": at}
        self._names: dict[tuple[type, Any], str] = {}
        self._aliases = 0
        self._expanding: list[str] = []
        where = "1" if campaign.audience is None else self.condition(campaign.audience, None)
        self.sql = ("SELECT u.user_id FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
                    f" WHERE u.first_seen <= :at AND ({where})")

    def param(self, value: Any) -> str:
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            raise Untranslatable(f"the number {value} is outside SQLite's integers")
        key = (type(value), value)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"p{len(self._names)}"
            self.params[name] = value
        return ":" + name

    # -- conditions: SQL that is 1 exactly when the Python closure gives True, never NULL --

    def condition(self, e: plan.Expr, event: str | None) -> str:
        """``event``: the alias of the ``events`` row that ``event.*`` reads, None outside ``did``."""
        if isinstance(e, plan.Const):
            return "1" if e.value is True else "0"
        if isinstance(e, plan.Var):
            term = self.operand(e, event)
            return "0" if isinstance(term, _Missing) else f"coalesce({_as_term(term).typ} = 'true', 0)"
        if isinstance(e, plan.ListOf):
            return "0"  # a list is never True
        if isinstance(e, plan.Not):
            return f"NOT ({self.condition(e.operand, event)})"
        if isinstance(e, plan.Exists):
            term = self.operand(e.var, event)
            return "0" if isinstance(term, _Missing) else f"coalesce({_as_term(term).typ} != 'null', 0)"
        if isinstance(e, plan.InSegment):
            return self.segment(e.segment, event)
        if isinstance(e, plan.DidEvent):
            return self.did(e, event)
        if isinstance(e, plan.BinOp):
            if e.op in ("and", "or"):
                return f"({self.condition(e.left, event)}) {e.op.upper()} ({self.condition(e.right, event)})"
            left, right = self.operand(e.left, event), self.operand(e.right, event)
            if e.op in _COMPARISONS:
                return self.compare(e.op, left, right)
            if e.op in _MEMBERSHIP:
                return self.membership(e.op, left, right)
            raise Untranslatable(f"arithmetic (`{e.op}`) is not translated to SQL")
        if isinstance(e, plan.Call):
            raise Untranslatable(f"the function {e.function}() is not translated to SQL")
        raise Untranslatable("arithmetic (negation) is not translated to SQL")

    def segment(self, name: str, event: str | None) -> str:
        expr = self.segments.get(name)
        if expr is None:
            return "1"  # no conditions: everyone
        if name in self._expanding:
            raise Untranslatable(f"segment {name} refers to itself")
        self._expanding.append(name)
        try:
            return self.condition(expr, event)
        finally:
            self._expanding.pop()

    def did(self, e: plan.DidEvent, event: str | None) -> str:
        self._aliases += 1
        alias = f"e{self._aliases}"
        match = (f"{alias}.user_id = u.user_id AND {alias}.name = {self.param(e.event)}"
                 f" AND {alias}.ts > {self.param(self.params['at'] - e.window * US)} AND {alias}.ts <= :at")
        if e.where is not None:
            match += f" AND ({self.condition(e.where, alias)})"
        rows = f"FROM events {alias} WHERE {match}"

        def at_least(n: int) -> str:
            if n <= 0:
                return "1"
            if n == 1:
                return f"EXISTS (SELECT 1 {rows})"
            return f"(SELECT count(*) FROM (SELECT 1 {rows} LIMIT {n})) >= {n}"

        if e.count_op == "at least":
            return at_least(e.count)
        if e.count_op == "at most":
            return f"NOT ({at_least(e.count + 1)})"
        if e.count < 0:
            return "0"
        if e.count == 0:
            return f"NOT EXISTS (SELECT 1 {rows})"
        return f"(SELECT count(*) FROM (SELECT 1 {rows} LIMIT {e.count + 1})) = {e.count}"

    # -- values --

    def operand(self, e: plan.Expr, event: str | None) -> _Operand:
        if isinstance(e, plan.Const):
            if e.kind not in ("string", "number", "bool", "null"):
                raise Untranslatable(f"{e.kind} values are not translated to SQL")
            return _Const(e.value)
        if isinstance(e, plan.Neg) and isinstance(e.operand, plan.Const) and e.operand.kind == "number":
            value = e.operand.value
            assert isinstance(value, (int, float)) and not isinstance(value, bool)
            return _Const(-value)
        if isinstance(e, plan.ListOf):
            return e
        if isinstance(e, plan.Var):
            return self.var(e, event)
        if isinstance(e, (plan.Not, plan.Exists, plan.InSegment, plan.DidEvent)) or (
                isinstance(e, plan.BinOp) and e.op not in ("+", "-", "*", "/")):
            truth = self.condition(e, event)  # these always give True or False
            return _Term(f"(CASE WHEN {truth} THEN 'true' ELSE 'false' END)", f"({truth})")
        if isinstance(e, plan.Call):
            raise Untranslatable(f"the function {e.function}() is not translated to SQL")
        raise Untranslatable("arithmetic is not translated to SQL")

    def var(self, e: plan.Var, event: str | None) -> _Term | _Missing:
        if e.root == "user":
            if e.path == ("id",):
                return _Term("'text'", "u.user_id")
            return self.json_term("p.props", e.path, "user")
        if e.root == "event":
            if event is None:
                return _MISSING_VALUE  # no triggering event: `who` of a live campaign sees none
            if e.path in (("name",), ("ts",)):
                raise Untranslatable(f"event.{e.path[0]} is not translated to SQL")
            return self.json_term(f"{event}.props", e.path, "event")
        raise Untranslatable(f"{e.root}.* is not translated to SQL")

    def json_term(self, column: str, path: tuple[str, ...], root: str) -> _Term:
        for key in path:
            if not key or '"' in key or "\\" in key:
                raise Untranslatable(f"the property name {key!r} of {root}.* is not translated to SQL")
        where = self.param("$" + "".join(f'."{key}"' for key in path))
        return _Term(f"json_type({column}, {where})", f"json_extract({column}, {where})", column, where)

    # -- operators: SQL for SPEC §6 as evaluate.compare and evaluate.membership implement it --

    def compare(self, op: str, left: _Operand, right: _Operand) -> str:
        if isinstance(left, _Missing) or isinstance(right, _Missing):
            return "0"
        if isinstance(left, plan.ListOf) or isinstance(right, plan.ListOf):
            raise Untranslatable("comparing a list with `" + op + "` is not translated to SQL")
        if isinstance(left, _Const) and isinstance(right, _Const):
            return "1" if compare(op, left.value, right.value, "UTC") else "0"
        if isinstance(left, _Const):
            assert isinstance(right, _Term)
            return self.compare(_MIRROR[op], right, left)
        if isinstance(right, _Term):
            raise Untranslatable("comparing two properties is not translated to SQL")
        assert isinstance(left, _Term) and isinstance(right, _Const)
        t, c, sql_op = left, right.value, _SQL_OP[op]
        if c is None:
            if op == "==":
                return f"coalesce({t.typ} = 'null', 0)"
            if op == "!=":
                return f"coalesce({t.typ} NOT IN ('integer', 'real', 'null'), 0)"
            return "0"
        if isinstance(c, bool):
            kinds = "('true', 'false')"
        elif isinstance(c, str):
            kinds = "('text')"
        else:
            kinds = "('integer', 'real')"
        same = f"{t.typ} IN {kinds} AND {t.val} {sql_op} {self.param(c)}"
        if op == "!=" and isinstance(c, (str, bool)):
            same = f"({same}) OR {t.typ} = 'null'"  # null differs from any string or boolean
        return f"coalesce({same}, 0)"

    def equal(self, t: _Term, c: Any) -> str:
        """``value == c`` in Python, as list membership tests it (so True == 1 and 1 == 1.0)."""
        if c is None:
            return f"{t.typ} = 'null'"
        if isinstance(c, str):
            return f"({t.typ} = 'text' AND {t.val} = {self.param(c)})"
        return f"({t.typ} IN ('integer', 'real', 'true', 'false') AND {t.val} = {self.param(c)})"

    def list_values(self, items: plan.ListOf) -> list[Any]:
        values = []
        for item in items.items:
            operand = self.operand(item, None) if not isinstance(item, plan.ListOf) else item
            if not isinstance(operand, _Const):
                raise Untranslatable("a list of anything but constants is not translated to SQL")
            values.append(operand.value)
        return values

    def in_array(self, t: _Term, c: Any) -> str:
        """Whether the JSON array ``t`` holds a value equal to ``c``."""
        if t.json is None:
            return "0"  # the user id, or a condition's result: never an array
        self._aliases += 1
        item = f"j{self._aliases}"
        element = self.equal(_Term(f"{item}.type", f"{item}.value"), c)
        return (f"({t.typ} = 'array' AND EXISTS (SELECT 1 FROM json_each({t.json}, {t.path}) {item}"
                f" WHERE {element}))")

    def membership(self, op: str, left: _Operand, right: _Operand) -> str:
        if isinstance(left, _Missing) or isinstance(right, _Missing):
            return "0"
        if isinstance(left, plan.ListOf):
            left = _Const(self.list_values(left))
        if isinstance(right, plan.ListOf):
            right = _Const(self.list_values(right))
        if isinstance(left, _Const) and isinstance(right, _Const):
            return "1" if membership(op, left.value, right.value) else "0"
        if isinstance(left, _Term) and isinstance(right, _Term):
            raise Untranslatable(f"`{op}` between two properties is not translated to SQL")
        sql = self._membership(op, left, right)
        return f"coalesce({sql}, 0)"

    def _membership(self, op: str, left: _Term | _Const, right: _Term | _Const) -> str:
        if op in ("in", "not in"):
            if isinstance(right, _Const):
                assert isinstance(left, _Term)
                if isinstance(right.value, list):
                    found = " OR ".join(self.equal(left, c) for c in right.value) or "0"
                    return f"({found})" if op == "in" else f"({left.typ} IS NOT NULL AND NOT ({found}))"
                if isinstance(right.value, str):
                    test = "> 0" if op == "in" else "= 0"
                    return f"({left.typ} = 'text' AND instr({self.param(right.value)}, {left.val}) {test})"
                return "0"
            assert isinstance(left, _Const)
            c = left.value
            if isinstance(c, list):
                raise Untranslatable(f"a list `{op}` a property is not translated to SQL")
            negate = "" if op == "in" else "NOT "
            array = (f"({right.typ} = 'array' AND {negate}({self.in_array(right, c)}))" if right.json is not None
                     else "0")
            if isinstance(c, str):
                test = "> 0" if op == "in" else "= 0"
                return f"(({right.typ} = 'text' AND instr({right.val}, {self.param(c)}) {test}) OR {array})"
            return array
        if op == "contains":
            if isinstance(left, _Const):
                assert isinstance(right, _Term)
                if isinstance(left.value, str):
                    return f"({right.typ} = 'text' AND instr({self.param(left.value)}, {right.val}) > 0)"
                if isinstance(left.value, list):
                    return "(" + (" OR ".join(self.equal(right, c) for c in left.value) or "0") + ")"
                return "0"
            assert isinstance(right, _Const)
            c = right.value
            if isinstance(c, list):
                raise Untranslatable("`contains` a list is not translated to SQL")
            array = self.in_array(left, c)
            if isinstance(c, str):
                return f"(({left.typ} = 'text' AND instr({left.val}, {self.param(c)}) > 0) OR {array})"
            return array
        # starts with / ends with: strings only
        if isinstance(left, _Const):
            assert isinstance(right, _Term)
            if not isinstance(left.value, str):
                return "0"
            whole, part = _Term("'text'", self.param(left.value)), right
        else:
            assert isinstance(right, _Const)
            if not isinstance(right.value, str):
                return "0"
            whole, part = left, _Term("'text'", self.param(right.value))
        if op == "starts with":
            test = f"substr({whole.val}, 1, length({part.val})) = {part.val}"
        else:
            test = f"(length({part.val}) = 0 OR substr({whole.val}, -length({part.val})) = {part.val})"
        return f"({whole.typ} = 'text' AND {part.typ} = 'text' AND {test})"


def _as_term(operand: _Operand) -> _Term:
    assert isinstance(operand, _Term)
    return operand


def uses(expr: plan.Expr | None, segments: dict[str, plan.Expr], kind: type[Any],
         test: Callable[[Any], bool] = lambda node: True) -> bool:
    """Whether ``expr`` (segments followed) holds a node of ``kind`` for which ``test`` holds."""
    seen: set[str] = set()

    def nodes(e: Any) -> Iterator[Any]:
        yield e
        if isinstance(e, plan.InSegment) and e.segment not in seen and e.segment in segments:
            seen.add(e.segment)
            yield from nodes(segments[e.segment])
        if isinstance(e, msgspec.Struct):
            for name in e.__struct_fields__:
                value = getattr(e, name)
                for item in value if isinstance(value, tuple) else (value,):
                    if isinstance(item, msgspec.Struct):
                        yield from nodes(item)

    return expr is not None and any(isinstance(n, kind) and test(n) for n in nodes(expr))


# ---- output ------------------------------------------------------------------------------------


def notes_for(compiled: plan.Plan, campaign: plan.Campaign, at: int, clock: int | None, *,
              from_store: bool) -> list[str]:
    notes = []
    if campaign.is_live:
        if uses(campaign.audience, compiled.segments, plan.Var, lambda v: v.root == "event"):
            notes.append("this live campaign's `who` is evaluated without a triggering event: its conditions "
                         "on event.* count as false (and `not` of them as true), so the audience when events "
                         "arrive can differ")
        else:
            notes.append("this live campaign's `who` is evaluated without a triggering event: these are the "
                         "users who would pass it if they triggered it now")
    if "safari" in campaign.platforms and campaign.message.url is None:
        notes.append("Safari subscriptions are not counted: the message has no url (SPEC §7)")
    if clock is not None and at < clock:
        notes.append(f"profiles and subscriptions are as of the latest record ({iso(clock)}), not as of "
                     "--at; --at moves who counts as known and the `did` windows")
    if from_store and uses(campaign.audience, compiled.segments, plan.DidEvent):
        notes.append("`did` conditions read the events the store kept: only the names that the campaigns "
                     "loaded when it was written needed, as far back as their windows")
    return notes


def render_text(result: Reach) -> str:
    width = max(len(f"{n:,}") for n in (result.known_users, result.audience, result.reachable, result.control,
                                        *result.by_platform.values()))
    label = 16

    def row(name: str, n: int, extra: str = "") -> str:
        return f"{name:<{label}}{n:>{width},}{'   ' + extra if extra else ''}"

    def share(n: int) -> str:
        return f"{100 * n / result.known_users:.1f}% of known users" if result.known_users else ""

    lines = [f"reach of {result.campaign} \"{result.name}\" at {iso(result.at)}", result.counted, "",
             row("known users", result.known_users),
             row("audience", result.audience, share(result.audience)),
             row("reachable", result.reachable, share(result.reachable))]
    lines.extend(row(f"  {platform}", n) for platform, n in result.by_platform.items())
    if result.control_percent:
        lines.append(row("control", result.control,
                         f"control group {result.control_percent:g}% of the reachable users"))
    else:
        lines.append(row("control", result.control, "no control group"))
    if result.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


# ---- command line ------------------------------------------------------------------------------

DESCRIPTION = """\
Estimate a campaign's reach from a state store: how many known users its `who` holds for (the
audience, with segments and `did` conditions), how many of those have an active subscription on a
platform the campaign allows (reachable; Safari only when the message has a url), the reachable
users per platform (a user counts once per platform), and how many of them the control group holds
out. Shares are of the known users (users with any record at or before --at).

State comes from --events (records replayed into the store first, decisions discarded) and/or an
existing --store (e.g. the SQLite file a `pushlang replay --store` left). Over a SQLite store the
audience is counted in SQL where its conditions translate exactly; otherwise, and over the
in-memory store, each user is evaluated in turn. The output says which was done.

Not counted: start/end, DND, limits, and messages that would fail to render. A live campaign's
`who` is evaluated without a triggering event, so conditions on event.* are false."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``reach`` command to the ``pushlang`` sub-command parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "reach", help="estimate a campaign's audience, reachable users and control group",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  pushlang reach examples/ --campaign advent_sale --events examples/events.jsonl.gz\n"
               "  pushlang replay examples/ --events events.jsonl --store sqlite:///state.db > /dev/null\n"
               "  pushlang reach examples/ --campaign advent_sale --store sqlite:///state.db --format json",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")
    p.add_argument("--campaign", required=True, metavar="ID", help="the id of the campaign to estimate")
    p.add_argument("--events", metavar="FILE",
                   help="records as JSON Lines (.gz too, - for stdin) replayed into the store first; "
                        "with --store they are added to it, as `pushlang replay --store` would")
    p.add_argument("--store", metavar="URL",
                   help="state store: sqlite:///file.db (counted in SQL) or memory (the default; needs --events)")
    p.add_argument("--at", metavar="DATETIME",
                   help="the instant to estimate at: who is known, and the `did` windows (default: the latest "
                        "record's time); without a zone it is in the campaign's timezone")
    p.add_argument("--config", metavar="FILE", help="pushlang.toml to use")
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    return p


def parse_at(text: str, tz: str) -> int:
    """``--at``: ISO-8601 with a zone, or a local date-time in ``tz``."""
    try:
        return parse_instant(text)
    except ValueError:
        pass
    try:
        return from_local(text.strip().replace(" ", "T"), tz)
    except ValueError:
        raise ValueError(f"--at {text!r} is not a date-time (e.g. 2026-12-10T10:00:00Z, or "
                         f"'2026-12-10 10:00' in the campaign's timezone {tz})") from None


def run(args: argparse.Namespace) -> int:
    """``pushlang reach``: 0 when counted, 1 when the campaigns do not compile; ValueError for bad input."""
    from pushlang.compiler import compile_paths
    from pushlang.runtime.hosts import find_campaign, open_records, open_store_url
    from pushlang.runtime.replay import replay

    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        raise ValueError(f"no such file or directory: {', '.join(missing)}")
    result = compile_paths(args.paths, config_path=args.config)
    result.report()
    compiled = result.plan
    if compiled is None:
        return 1
    campaign = find_campaign(compiled, args.campaign)
    if not args.events and args.store in (None, "memory", "memory:"):
        raise ValueError("nothing to count: give --events FILE to replay and/or --store sqlite:///FILE")
    if args.store and args.store.startswith("sqlite:///") and not args.events:
        path = args.store[len("sqlite:///"):]
        if path and not os.path.exists(path):
            raise ValueError(f"--store {args.store}: {path} does not exist (give --events to fill a new store)")
    at = parse_at(args.at, campaign.timezone) if args.at is not None else None
    try:
        store = open_store_url(args.store)
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"--store {args.store}: {exc}") from None
    try:
        if args.events:
            with open_records(args.events) as lines:
                summary = replay(compiled, lines, store, lambda decision: None)
            if summary.rejects:
                print(f"pushlang reach: {len(summary.rejects):,} of {summary.records + len(summary.rejects):,} "
                      f"records rejected (`pushlang replay --rejects FILE` lists them)", file=sys.stderr)
        clock: int | None = store.meta("clock")
        if at is None:
            if clock is None:
                raise ValueError("the store holds no records, so there is no latest instant: give --at DATETIME")
            at = clock
        counted = count_reach(compiled, campaign, store, at)
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"--store {args.store}: {exc}") from None
    finally:
        store.close()
    counted.notes = notes_for(compiled, campaign, at, clock, from_store=not args.events)
    if args.format == "json":
        print(msgspec.json.format(msgspec.json.encode(counted.to_json()), indent=2).decode())
    else:
        print(render_text(counted))
    return 0


__all__ = ["COUNTED_IN_SQL", "AudienceQuery", "Reach", "Untranslatable", "add_parser", "channels",
           "count_reach", "parse_at", "render_text", "run"]
