"""Checks on the message against the platforms it goes to, and on the control group."""

from __future__ import annotations

import re

from pushlang import ast
from pushlang.check.context import CheckContext, message_words
from pushlang.diagnostics import codes

_TAG = re.compile(r"[A-Za-z0-9_-]{1,32}")


def safari(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        if "safari" not in view.allowed_platforms():
            continue
        for message in view.sent_messages:
            fields = ctx.effective_message(view, message)
            if "url" not in fields:
                ctx.report(codes.SAFARI_WITHOUT_URL, view.path, message.span,
                           f"Safari is allowed but {message_words(message)} has no `url`; "
                           "Safari subscribers are skipped",
                           help='add `url "https://..."`, or leave Safari out: `platforms chrome, firefox, edge`')
            for name in ("icon", "image", "button"):
                for f, path in fields.get(name, []):
                    ctx.report(codes.SAFARI_DROPS_MEDIA, path, f.span,
                               f"Safari drops the {name} of campaign `{view.node.id}`",
                               help="leave Safari out with `platforms chrome, firefox, edge` if the "
                                    f"{name} matters")


def buttons(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        for message in view.sent_messages:
            given = ctx.effective_message(view, message).get("button", [])
            for f, path in given[2:]:
                ctx.report(codes.TOO_MANY_BUTTONS, path, f.span,
                           f"a third button: Chrome shows at most 2 (campaign `{view.node.id}`)",
                           help="keep the two most important buttons")


def tags(ctx: CheckContext) -> None:
    fields = [(f, tpl.path) for tpl in ctx.all_templates for f in tpl.node.fields]
    fields += [(f, view.path) for view in ctx.campaigns for m in view.messages for f in m.fields]
    for f, path in fields:
        if isinstance(f, ast.Tag) and not _TAG.fullmatch(f.tag):
            ctx.report(codes.INVALID_TAG, path, f.span,
                       f"tag {f.tag!r} is not 1–32 URL-safe base64 characters (A–Z a–z 0–9 - _)",
                       help=f'e.g. "{_suggest(f.tag)}"')


def _suggest(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", tag).strip("-")[:32] or "my-tag"


def control_group(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        for control in view.controls:
            if control.percent >= 100:
                ctx.report(codes.CONTROL_GROUP_ALL, view.path, control.span,
                           "a control group of 100% holds out every user: the campaign never sends",
                           help="use a small control group (5–20% is usual)")
            elif control.percent > 50:
                ctx.report(codes.CONTROL_GROUP_LARGE, view.path, control.span,
                           f"a control group of {control.percent:g}% holds out most users",
                           help="use a smaller control group unless the experiment needs this split")
