"""Plan expressions compiled once into Python closures; evaluation errors are values, never raised.

A missing property, a value of the wrong type or an impossible operation gives ``MISSING``:
comparisons with it are false, and ``not`` makes them true (SPEC §6).
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

from mypy_extensions import mypyc_attr

from pushlang import plan
from pushlang.runtime.instants import from_local, to_datetime


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


@mypyc_attr(allow_interpreted_subclasses=True)  # extended by the tests' histories
class History:
    """What behaviour predicates read: a user's events of one name, oldest first."""

    def events(self, name: str) -> Sequence[tuple[int, dict[str, Any]]]:
        raise NotImplementedError


class Env:
    """Everything an expression may read at one decision."""

    __slots__ = ("event", "event_name", "event_ts", "history", "now", "profile", "segments", "trigger",
                 "trigger_name", "trigger_ts", "user_id")

    def __init__(self, user_id: str, profile: dict[str, Any], now: int, history: History | None = None,
                 segments: dict[str, Fn] | None = None, event_name: str | None = None, event_ts: int = 0,
                 event: dict[str, Any] | None = None) -> None:
        self.user_id = user_id
        self.profile = profile
        self.now = now
        self.history = history
        self.segments = segments if segments is not None else {}  # (an empty Segments is still the one to share)
        self.event = event
        self.event_name = event_name
        self.event_ts = event_ts
        self.trigger: dict[str, Any] | None = None
        self.trigger_name: str | None = None
        self.trigger_ts = 0

    def with_event(self, name: str | None, ts: int, props: dict[str, Any] | None) -> Env:
        env = Env(self.user_id, self.profile, self.now, self.history, self.segments)
        env.event, env.event_name, env.event_ts = props, name, ts
        env.trigger, env.trigger_name, env.trigger_ts = self.trigger, self.trigger_name, self.trigger_ts
        return env


Fn = Callable[[Env], Any]


def is_true(value: Any) -> bool:
    return value is True


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(a: Any, b: Any) -> bool:
    if _num(a) or _num(b):
        return _num(a) and _num(b)
    return type(a) is type(b) or (a is None or b is None)


def as_datetime(value: Any, tz: str) -> dt.datetime | None:
    """A date-time value, an ISO-8601 string (naive: in ``tz``) or epoch seconds as a date-time."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return to_datetime(from_local(parsed.isoformat(), tz))
        return parsed
    if _num(value) and math.isfinite(value):
        return to_datetime(int(value * 1_000_000))
    return None


def compare(op: str, left: Any, right: Any, tz: str) -> bool:
    if left is MISSING or right is MISSING:
        return False
    if isinstance(left, dt.datetime) or isinstance(right, dt.datetime):
        left, right = as_datetime(left, tz), as_datetime(right, tz)
        if left is None or right is None:
            return False
    elif not _same_kind(left, right):
        return False
    try:
        if op == "==":
            return bool(left == right)
        if op == "!=":
            return bool(left != right)
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
        if op == ">":
            return bool(left > right)
        return bool(left >= right)
    except TypeError:
        return False


def arithmetic(op: str, left: Any, right: Any, tz: str) -> Any:
    if left is MISSING or right is MISSING:
        return MISSING
    try:
        return _arithmetic(op, left, right, tz)
    except (OverflowError, ValueError):  # a date-time beyond year 9999, a number too large
        return MISSING


def _arithmetic(op: str, left: Any, right: Any, tz: str) -> Any:
    if _num(left) and _num(right):
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if right == 0:
            return MISSING
        return left / right
    if isinstance(right, dt.timedelta) and op in "+-":
        if isinstance(left, dt.timedelta):
            return left + right if op == "+" else left - right
        when = as_datetime(left, tz) if isinstance(left, (str, dt.datetime)) else None
        if when is not None:
            return when + right if op == "+" else when - right
    if op == "-" and isinstance(left, (str, dt.datetime)) and isinstance(right, (str, dt.datetime)):
        a, b = as_datetime(left, tz), as_datetime(right, tz)
        if a is not None and b is not None:
            return a - b
    return MISSING


def membership(op: str, left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return False
    try:
        if op in ("in", "not in"):
            if isinstance(right, str) and not isinstance(left, str):
                return False
            found = left in right if isinstance(right, (list, str, tuple)) else None
            if found is None:
                return False
            return found if op == "in" else not found
        if op == "contains":
            if isinstance(left, str):
                return isinstance(right, str) and right in left
            return isinstance(left, (list, tuple)) and right in left
        if not (isinstance(left, str) and isinstance(right, str)):
            return False
        return left.startswith(right) if op == "starts with" else left.endswith(right)
    except TypeError:
        return False


def _lookup(value: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return MISSING
        value = value.get(key, MISSING)
        if value is MISSING:
            return MISSING
    return value


_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
            ">=": operator.ge}


def _compare_constant(op: str, left: Fn, constant: Any, tz: str) -> Fn:
    """``x > 20``, ``x == "IN"``: the common shapes, without the general type dispatch."""
    cmp = _COMPARE[op]
    kind: tuple[type, ...] = (str,) if isinstance(constant, str) else (int, float)

    def fast(env: Env) -> bool:
        value = left(env)
        if type(value) in kind:
            return bool(cmp(value, constant))
        return compare(op, value, constant, tz)
    return fast


def _event_value(props: dict[str, Any] | None, name: str | None, ts: int, first: str, rest: Sequence[str],
                 builtin_ts: bool) -> Any:
    """``event.x`` / ``trigger.x``: a property, else the built-in ``name`` and ``ts``."""
    if props is None:
        return MISSING
    if first in props:
        return _lookup(props[first], rest)
    if first == "name" and not rest:
        return name
    return to_datetime(ts) if builtin_ts else MISSING


def _always_bool(expr: plan.Expr) -> bool:
    """Whether the closure of ``expr`` only ever returns True or False (never a value or MISSING)."""
    if isinstance(expr, plan.BinOp):
        return expr.op not in ("+", "-", "*", "/")
    if isinstance(expr, plan.IfThen):
        return _always_bool(expr.then) and _always_bool(expr.else_)
    return isinstance(expr, (plan.Not, plan.Exists, plan.InSegment, plan.DidEvent))


class Compiler:
    """Turns plan expressions into closures for one campaign's timezone."""

    def __init__(self, tz: str) -> None:
        self.tz = tz

    def compile(self, expr: plan.Expr) -> Fn:
        method = getattr(self, "_" + type(expr).__name__)
        fn: Fn = method(expr)
        return fn

    def condition(self, expr: plan.Expr | None) -> Callable[[Env], bool]:
        if expr is None:
            return lambda env: True
        fn = self.compile(expr)
        if _always_bool(expr):
            return fn  # already True or False: no wrapper to call through
        return lambda env: fn(env) is True

    def _Const(self, e: plan.Const) -> Fn:
        value: Any = e.value
        if e.kind == "duration" and isinstance(value, int):
            value = dt.timedelta(seconds=value)
        elif e.kind == "datetime" and isinstance(value, str):
            value = to_datetime(from_local(value, self.tz))
        return lambda env: value

    def _ListOf(self, e: plan.ListOf) -> Fn:
        if all(isinstance(i, plan.Const) and i.kind in ("string", "number", "bool", "null") for i in e.items):
            constant = [i.value for i in e.items if isinstance(i, plan.Const)]
            return lambda env: constant
        items = [self.compile(i) for i in e.items]
        return lambda env: [f(env) for f in items]

    def _Var(self, e: plan.Var) -> Fn:
        path = e.path
        first, rest = path[0], path[1:]
        if e.root == "user":
            if path == ("id",):
                return lambda env: env.user_id
            return lambda env: _lookup(env.profile.get(first, MISSING), rest) if first in env.profile else MISSING
        builtin_ts = first == "ts" and not rest
        if e.root == "event" and not rest and first not in ("name", "ts"):
            # ``event.price``: the commonest read of all, a property or nothing
            return lambda env: MISSING if (props := env.event) is None else props.get(first, MISSING)
        if e.root == "event":
            return lambda env: _event_value(env.event, env.event_name, env.event_ts, first, rest, builtin_ts)
        return lambda env: _event_value(env.trigger, env.trigger_name, env.trigger_ts, first, rest, builtin_ts)

    def _Call(self, e: plan.Call) -> Fn:
        args = [self.compile(a) for a in e.args]
        tz = self.tz
        name = e.function
        if name == "now":
            return lambda env: to_datetime(env.now)
        (arg,) = args
        if name == "lower":
            return lambda env: v.lower() if isinstance(v := arg(env), str) else MISSING
        if name == "upper":
            return lambda env: v.upper() if isinstance(v := arg(env), str) else MISSING
        if name == "len":
            return lambda env: len(v) if isinstance(v := arg(env), (str, list, dict)) else MISSING
        if name == "date":
            return lambda env: as_datetime(v, tz) or MISSING if (v := arg(env)) is not MISSING else MISSING

        def days_since(env: Env) -> Any:
            when = as_datetime(arg(env), tz) if arg(env) is not MISSING else None
            return MISSING if when is None else (to_datetime(env.now) - when).days
        return days_since

    def _Not(self, e: plan.Not) -> Fn:
        operand = self.compile(e.operand)
        return lambda env: operand(env) is not True

    def _Neg(self, e: plan.Neg) -> Fn:
        operand = self.compile(e.operand)

        def neg(env: Env) -> Any:
            v = operand(env)
            return -v if _num(v) or isinstance(v, dt.timedelta) else MISSING
        return neg

    def _BinOp(self, e: plan.BinOp) -> Fn:
        left, right, op, tz = self.compile(e.left), self.compile(e.right), e.op, self.tz
        if op == "and":
            return lambda env: left(env) is True and right(env) is True
        if op == "or":
            return lambda env: left(env) is True or right(env) is True
        if op in _COMPARE:
            if isinstance(e.right, plan.Const) and e.right.kind in ("number", "percent", "string"):
                return _compare_constant(op, left, e.right.value, tz)
            return lambda env: compare(op, left(env), right(env), tz)
        if op in ("+", "-", "*", "/"):
            return lambda env: arithmetic(op, left(env), right(env), tz)
        return lambda env: membership(op, left(env), right(env))

    def _IfThen(self, e: plan.IfThen) -> Fn:
        cond, then, else_ = self.compile(e.cond), self.compile(e.then), self.compile(e.else_)
        return lambda env: then(env) if cond(env) is True else else_(env)

    def _Exists(self, e: plan.Exists) -> Fn:
        var = self._Var(e.var)
        return lambda env: (v := var(env)) is not MISSING and v is not None

    def _InSegment(self, e: plan.InSegment) -> Fn:
        name = e.segment
        return lambda env: env.segments[name](env) is True

    def _DidEvent(self, e: plan.DidEvent) -> Fn:
        where = self.condition(e.where) if e.where is not None else None
        window_us = e.window * 1_000_000
        name, op, count = e.event, e.count_op, e.count

        def did(env: Env) -> bool:
            if env.history is None:
                return False
            since = env.now - window_us
            n = 0
            for ts, props in env.history.events(name):
                if since < ts <= env.now and (where is None or where(env.with_event(name, ts, props))):
                    n += 1
                    if op == "at least" and n >= count:
                        return True
            if op == "at least":
                return n >= count
            if op == "at most":
                return n <= count
            return n == count
        return did
