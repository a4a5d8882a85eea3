"""Decoding literal tokens: strings with escapes, durations, dates and times, percents."""

from __future__ import annotations

import datetime as dt
import re

_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}
_UNICODE = re.compile(r"\{([0-9A-Fa-f]{1,6})\}")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class LiteralError(ValueError):
    """A literal that lexes but has no value; ``offset`` is where in the token it goes wrong."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def decode_string(raw: str) -> tuple[str, list[int]]:
    """The value of a quoted string token, and for each character of it the offset in ``raw``.

    The offsets let positions inside a message text (personalisations) point at the file.
    """
    body_end = len(raw) - 1
    out: list[str] = []
    offsets: list[int] = []
    i = 1
    while i < body_end:
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            offsets.append(i)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            offsets.append(i)
            i += 2
        elif nxt == "u":
            m = _UNICODE.match(raw, i + 2)
            if m is None or int(m.group(1), 16) > 0x10FFFF:
                raise LiteralError("a unicode escape is written \\u{1F6D2} (1–6 hex digits)", i)
            out.append(chr(int(m.group(1), 16)))
            offsets.append(i)
            i = m.end()
        else:
            raise LiteralError(
                f"unknown escape `\\{nxt}`; strings know \\\" \\' \\\\ \\n \\t \\u{{...}}", i
            )
    offsets.append(body_end)  # one past the last character: where the closing quote is
    return "".join(out), offsets


def duration_seconds(text: str) -> int:
    return int(text[:-1]) * DURATION_UNITS[text[-1]]


def duration_text(seconds: int) -> str:
    """A positive duration as written in its largest whole unit: 86400 → ``1d``, 5400 → ``90m`` (so
    `per 24h` and `per 1d` read alike)."""
    unit, size = next((u, n) for u, n in sorted(DURATION_UNITS.items(), key=lambda x: -x[1]) if seconds % n == 0)
    return f"{seconds // size}{unit}"


def parse_time(text: str) -> str:
    """``09:00`` → ``09:00:00``; raises LiteralError for 24:00 or 09:75."""
    parts = [int(p) for p in text.split(":")]
    hour, minute, second = [*parts, 0][:3]
    if hour > 23 or minute > 59 or second > 59:
        raise LiteralError(f"`{text}` is not a time of day (00:00 to 23:59:59)")
    return f"{hour:02d}:{minute:02d}:{second:02d}"


def parse_datetime(text: str) -> str:
    """``2026-12-01 09:00`` → ``2026-12-01T09:00:00`` (naive, read in the campaign's zone)."""
    date_text, _, time_text = text.replace("T", " ").partition(" ")
    try:
        date = dt.date.fromisoformat(date_text)
    except ValueError:
        raise LiteralError(f"`{date_text}` is not a calendar date (YYYY-MM-DD)") from None
    clock = parse_time(time_text) if time_text else "00:00:00"
    return f"{date.isoformat()}T{clock}"


def parse_percent(text: str) -> float:
    value = float(text[:-1])
    if value > 100:
        raise LiteralError(f"`{text}` is over 100%")
    return value
