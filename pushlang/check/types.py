"""Checks on operand types that are known at compile time (literals)."""

from __future__ import annotations

from pushlang import ast
from pushlang.check.context import CheckContext, field_texts, walk
from pushlang.diagnostics import codes

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_ARITHMETIC = frozenset({"+", "-", "*", "/"})
_TEXT_OPS = frozenset({"contains", "starts with", "ends with"})
_DATE_KINDS = frozenset({"datetime", "string"})  # strings parse as ISO-8601 against date-times


def _kind(expr: ast.Expr) -> str | None:
    if isinstance(expr, ast.Literal):
        return "number" if expr.kind == "percent" else expr.kind
    if isinstance(expr, ast.ListExpr):
        return "list"
    return None


def literal_types(ctx: CheckContext) -> None:
    exprs = [(c, s.path) for s in ctx.all_segments for c in s.node.conditions]
    exprs += [(e, view.path) for view in ctx.campaigns for e in view.own_expressions()]
    for group, path in ctx.written_fields():
        for text in field_texts(group):
            exprs += [(p.expr, path) for p in text.parts if isinstance(p, ast.Interpolation)]
    for expr, path in exprs:
        for node in walk(expr):
            if isinstance(node, ast.Binary):
                problem = _problem(node)
                if problem:
                    ctx.report(codes.TYPE_MISMATCH, path, node.span, problem,
                               help="there is no implicit conversion between strings and numbers")
            elif isinstance(node, ast.IfThen):
                never = _never_boolean(node.cond)
                if never:
                    ctx.report(codes.CONDITION_NEVER_BOOLEAN, path, node.cond.span,
                               f"the condition of this `if` is {never}, never `true`: the `then` branch is never taken",
                               help="write a comparison, e.g. `if user.vip == true then ... else ...`")


def _never_boolean(cond: ast.Expr) -> str | None:
    """What a condition is when it can never be a boolean: a literal that is not one, or arithmetic."""
    kind = _kind(cond)
    if kind is not None and kind != "bool":
        return f"a {kind}"
    if isinstance(cond, ast.Binary) and cond.op in _ARITHMETIC:
        return f"arithmetic (`{cond.op}`)"
    if isinstance(cond, ast.Unary) and cond.op == "-":
        return "a negated number"
    return None


def _problem(node: ast.Binary) -> str | None:
    left, right = _kind(node.left), _kind(node.right)
    if node.op in _COMPARISONS and left and right and left != right and "null" not in (left, right):
        if {left, right} <= _DATE_KINDS:
            return None
        return f"`{node.op}` compares a {left} with a {right}: it is never true"
    if node.op in _ARITHMETIC:
        for kind in (left, right):
            if kind in ("string", "bool", "list", "null"):
                return f"`{node.op}` cannot apply to a {kind}"
    if node.op in _TEXT_OPS and right in ("number", "bool", "null", "list"):
        return f"`{node.op}` needs a string on the right, not a {right}"
    if node.op in ("in", "not in") and right in ("number", "bool", "null", "duration"):
        return f"`{node.op}` needs a list or a string on the right, not a {right}"
    return None
