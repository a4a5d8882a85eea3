"""The audience of a campaign as SQL over the SQLite store (DESIGN.md "Embedded default: SQLite").

The ``who`` expression, with its segments inlined, becomes one WHERE clause over ``users`` and
``profiles``, and each ``did`` a correlated subquery that the ``(user_id, name, ts)`` index answers.
The translation keeps SPEC §6 exactly (a missing property or a value of another type makes a
comparison false, ``not`` makes it true); whatever it cannot translate with certainty (functions,
arithmetic, date-times, ``trigger.*``, two properties compared) raises :class:`Untranslatable`, and
`reach` then evaluates the campaign's own steps user by user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from pushlang import plan
from pushlang.runtime.evaluate import compare, membership
from pushlang.runtime.instants import US

_INT64 = (-(2**63), 2**63 - 1)
_MIRROR = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SQL_OP = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_COMPARISONS = frozenset(_SQL_OP)
_MEMBERSHIP = frozenset({"in", "not in", "contains", "starts with", "ends with"})


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
        if isinstance(e, plan.IfThen):  # only a true condition takes the first branch
            return (f"(CASE WHEN {self.condition(e.cond, event)} THEN {self.condition(e.then, event)}"
                    f" ELSE {self.condition(e.else_, event)} END)")
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
        if _truth_valued(e):
            truth = self.condition(e, event)  # these always give True or False
            return _Term(f"(CASE WHEN {truth} THEN 'true' ELSE 'false' END)", f"({truth})")
        if isinstance(e, plan.IfThen):
            raise Untranslatable("`if ... then ... else` as a value (not a condition) is not translated to SQL")
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


def _truth_valued(e: plan.Expr) -> bool:
    """Whether ``e`` always gives True or False, never another value or MISSING."""
    if isinstance(e, plan.IfThen):
        return _truth_valued(e.then) and _truth_valued(e.else_)
    return isinstance(e, (plan.Not, plan.Exists, plan.InSegment, plan.DidEvent)) or (
        isinstance(e, plan.BinOp) and e.op not in ("+", "-", "*", "/"))


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
