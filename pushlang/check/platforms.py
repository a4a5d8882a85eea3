"""Checks on the message against the platforms it goes to, and on the control group."""

from __future__ import annotations

import re

from pushlang import ast
from pushlang.builtins import LANG_TAG
from pushlang.check.context import CheckContext, message_words, repeats
from pushlang.diagnostics import codes

_TAG = re.compile(r"[A-Za-z0-9_-]{1,32}")


def safari(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        if "safari" not in view.allowed_platforms():
            continue
        reported: set[int] = set()  # a field the message and its languages share is reported once
        for message in view.sent_messages:
            for lang, fields in ctx.effective_messages(view, message):
                if "url" not in fields:
                    what = message_words(message) if lang is None else f"its `lang \"{lang}\"` block"
                    ctx.report(codes.SAFARI_WITHOUT_URL, view.path, message.span,
                               f"Safari is allowed but {what} has no `url`; Safari subscribers are skipped",
                               help='add `url "https://..."`, or leave Safari out: '
                                    '`platforms chrome, firefox, edge`')
                    break  # a language never takes the url away: once is enough
                for name in ("icon", "image", "button"):
                    for f, path in fields.get(name, []):
                        if id(f) in reported:
                            continue
                        reported.add(id(f))
                        ctx.report(codes.SAFARI_DROPS_MEDIA, path, f.span,
                                   f"Safari drops the {name} of campaign `{view.node.id}`",
                                   help="leave Safari out with `platforms chrome, firefox, edge` if the "
                                        f"{name} matters")


def buttons(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        reported: set[int] = set()
        for message in view.sent_messages:
            for _lang, fields in ctx.effective_messages(view, message):
                for f, path in fields.get("button", [])[2:]:
                    if id(f) not in reported:
                        reported.add(id(f))
                        ctx.report(codes.TOO_MANY_BUTTONS, path, f.span,
                                   f"a third button: Chrome shows at most 2 (campaign `{view.node.id}`)",
                                   help="keep the two most important buttons")


def tags(ctx: CheckContext) -> None:
    fields = [(f, path) for group, path in ctx.written_fields() for f in group]
    for f, path in fields:
        if isinstance(f, ast.Tag) and not _TAG.fullmatch(f.tag):
            ctx.report(codes.INVALID_TAG, path, f.span,
                       f"tag {f.tag!r} is not 1–32 URL-safe base64 characters (A–Z a–z 0–9 - _)",
                       help=f'e.g. "{_suggest(f.tag)}"')


def languages(ctx: CheckContext) -> None:
    """`lang "TAG"` blocks: a BCP 47 shaped tag, each tag once in a message, a variant or a template
    (SPEC §12.5)."""
    owners = [(tpl.node.langs, tpl.path) for tpl in ctx.all_templates]
    owners += [(m.langs, view.path) for view in ctx.campaigns for m in view.messages]
    for blocks, path in owners:
        for block in blocks:
            if not LANG_TAG.fullmatch(block.tag):
                suggestion = block.tag.replace("_", "-")
                ctx.report(codes.INVALID_LANG_TAG, path, block.tag_span,
                           f"lang {block.tag!r} is not a BCP 47 language tag",
                           help=f'e.g. "{suggestion}"' if LANG_TAG.fullmatch(suggestion)
                           else 'e.g. "fr", "pt-BR", "zh-Hant-TW"')
        for block, first in repeats(blocks, lambda b: b.tag.lower()):
            ctx.report(codes.DUPLICATE_LANG, path, block.tag_span,
                       f"lang {block.tag!r} is given twice" +
                       ("" if first.tag == block.tag else f" (as {first.tag!r}: tags match in any case)"),
                       notes=(f"the first is at line {first.span.line}",),
                       help="keep one block per language, with all its fields")


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
