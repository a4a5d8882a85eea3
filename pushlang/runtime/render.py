"""Message texts rendered for one user (SPEC §7): personalisations, filters, platforms, payload size."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Callable
from typing import Any

import msgspec

from pushlang import plan
from pushlang.runtime.evaluate import MISSING, Compiler, Env, Fn
from pushlang.runtime.outcomes import Rendered

MAX_PLAINTEXT = 3993  # the encrypted body must fit 4096 bytes (SPEC §9.5)


class MissingProperty(Exception):
    """A personalisation without a default found nothing: the decision is suppressed, never sent."""


def format_value(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _round(value: Any, n: int) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{n}f}"
    return MISSING


TextFn = Callable[[Env], str]


def compile_text(text: plan.Text, compiler: Compiler) -> TextFn:
    pieces: list[str | tuple[Fn, list[tuple[str, Fn | None]]]] = []
    for part in text.parts:
        if isinstance(part, plan.Literal):
            pieces.append(part.text)
        else:
            filters = [(f.name, compiler.compile(f.arg) if f.arg is not None else None) for f in part.filters]
            pieces.append((compiler.compile(part.expr), filters))
    if all(isinstance(p, str) for p in pieces):
        constant = "".join(p for p in pieces if isinstance(p, str))
        return lambda env: constant

    def render(env: Env) -> str:
        out: list[str] = []
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            expr, filters = piece
            value = expr(env)
            if value is None:
                value = MISSING
            for name, arg in filters:
                value = _apply(name, value, arg(env) if arg is not None else None)
            if value is MISSING:
                raise MissingProperty()
            out.append(format_value(value))
        return "".join(out)
    return render


def _apply(name: str, value: Any, arg: Any) -> Any:
    if name == "default":
        return arg if value is MISSING else value
    if value is MISSING:
        return MISSING
    if name == "round":
        return _round(value, int(arg))
    text = format_value(value)
    if name == "upper":
        return text.upper()
    if name == "lower":
        return text.lower()
    if name == "capitalize":
        return _capitalize(text)
    if name == "truncate":
        return _truncate(text, int(arg))
    return urllib.parse.quote(text, safe="")  # urlencode: RFC 3986 unreserved characters stay


class MessageRenderer:
    """One campaign's message, compiled once and rendered per decision."""

    def __init__(self, message: plan.Message, compiler: Compiler) -> None:
        self.message = message
        self._title = compile_text(message.title, compiler)
        self._body = compile_text(message.body, compiler)
        self._url = compile_text(message.url, compiler) if message.url else None
        self._image = compile_text(message.image, compiler) if message.image else None
        self._icon = compile_text(message.icon, compiler) if message.icon else None
        self._buttons = [(compile_text(b.label, compiler), compile_text(b.url, compiler)) for b in message.buttons]
        # the message in each of its languages (SPEC §12.5), by the tag as written
        self.langs = {lang.tag: MessageRenderer(lang.message, compiler) for lang in message.langs}

    def render(self, env: Env) -> Rendered:
        """Raises MissingProperty when a personalisation has no value and no default."""
        url, image, icon, buttons = self._url, self._image, self._icon, self._buttons
        return Rendered(
            self._title(env),
            self._body(env),
            url(env) if url else None,
            image(env) if image else None,
            icon(env) if icon else None,
            tuple([(label(env), link(env)) for label, link in buttons]) if buttons else (),
        )


def web_push_payload(rendered: Rendered, message: plan.Message, *, campaign: str, send_id: str,
                     safari: bool = False) -> dict[str, Any]:
    """What the service worker receives (SPEC §7): Safari gets no icon, image or buttons; Chrome ≤ 2."""
    payload: dict[str, Any] = {"title": rendered.title, "body": rendered.body, "url": rendered.url,
                               "send_id": send_id, "campaign": campaign}
    if not safari:
        if rendered.icon:
            payload["icon"] = rendered.icon
        if rendered.image:
            payload["image"] = rendered.image
        if rendered.buttons:
            payload["actions"] = [{"title": t, "url": u} for t, u in rendered.buttons[:2]]
    if message.require_interaction:
        payload["requireInteraction"] = True
    if message.tag:
        payload["tag"] = message.tag
    return payload


def payload_size(payload: dict[str, Any]) -> int:
    return len(msgspec.json.encode(payload))
