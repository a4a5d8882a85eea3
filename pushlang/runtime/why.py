"""Traces of the decision pipeline in words: what `preview`, `:why` and the REPL print.

Nothing here decides anything: the verdicts and their details come from
:func:`pushlang.runtime.pipeline.trace`, which runs the engine's own steps.
"""

from __future__ import annotations

from pushlang.runtime.instants import iso
from pushlang.runtime.outcomes import Delay
from pushlang.runtime.pipeline import Trace, Verdict


def verdict_line(v: Verdict) -> str:
    """``✓ dnd: 10:00 in Europe/Berlin is outside DND 21:00–08:00`` or ``✗ cutoff: ...``: a step that
    stops the decision is named by the reason it gives (else by its own name: ``✗ control``)."""
    if v.decision is None:
        return f"✓ {v.step}: {v.detail}"
    return f"✗ {v.decision.reason or v.step}: {v.detail}"


def verdict(t: Trace) -> str:
    """``send``, ``suppress (dnd)``, ``delay (dnd) until ...``, ``skip``."""
    d = t.decision
    if d is None:
        return "passes every step shown"
    words = d.outcome + (f" ({d.reason})" if d.reason else "")
    if isinstance(d, Delay):
        words += f" until {iso(d.until)}"
    return words


def message_lines(t: Trace) -> list[str]:
    """The rendered message of a send (or of a delayed send), field by field."""
    send = t.send
    if send is None:
        return []
    lines = [f"  title  {send.title}", f"  body   {send.body}"]
    for name, value in (("url", send.url), ("image", send.image), ("icon", send.icon)):
        if value:
            lines.append(f"  {name:<6} {value}")
    lines.extend(f"  button {label} -> {url}" for label, url in send.buttons)
    if send.platforms:
        lines.append(f"  to     {', '.join(send.platforms)}")
    return lines


def render_trace(t: Trace, *, heading: str | None = None) -> str:
    """A trace on its own: a heading, each step, the verdict and the message."""
    lines = [heading or f"campaign {t.campaign}, user {t.user}, at {iso(t.at)}"
             + (" (a delayed decision, made again)" if t.again else "")]
    lines.extend(f"  {verdict_line(v)}" for v in t.verdicts)
    lines.append(f"→ {verdict(t)}")
    message = message_lines(t)
    if message:
        lines.append("")
        lines.extend(message)
    return "\n".join(lines)
