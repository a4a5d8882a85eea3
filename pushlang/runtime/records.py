"""Input records (SPEC §9.1): JSON Lines decoded with msgspec; a bad line is rejected, never fatal."""

from __future__ import annotations

import contextlib
import gzip
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, cast

import msgspec

from pushlang.builtins import PLATFORMS
from pushlang.runtime.instants import US, parse_instant


class Profile(msgspec.Struct, frozen=True, gc=False):
    user: str
    ts: int
    props: dict[str, Any]


class Event(msgspec.Struct, frozen=True, gc=False):
    user: str
    ts: int
    name: str
    props: dict[str, Any]


class Subscribe(msgspec.Struct, frozen=True, gc=False):
    user: str
    ts: int
    platform: str
    endpoint: str | None = None
    keys: dict[str, str] | None = None
    device_token: str | None = None


class Unsubscribe(msgspec.Struct, frozen=True, gc=False):
    user: str
    ts: int
    endpoint: str | None = None
    device_token: str | None = None


Record = Profile | Event | Subscribe | Unsubscribe


class Reject(msgspec.Struct, frozen=True):
    """A line that is not a valid record: where it is and why."""

    line: int
    reason: str
    text: str


class _Raw(msgspec.Struct, gc=False):
    type: str = "event"
    user: str | int | None = None
    ts: str | int | float | None = None
    name: str | None = None
    props: dict[str, Any] | None = None
    platform: str | None = None
    endpoint: str | None = None
    keys: dict[str, str] | None = None
    device_token: str | None = None


_decoder = msgspec.json.Decoder(_Raw)


class InvalidRecord(ValueError):
    pass


def decode_record(line: bytes | str) -> Record:
    """One record from one JSON line; InvalidRecord with the reason otherwise."""
    try:
        raw = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise InvalidRecord(_validation_reason(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise InvalidRecord(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidRecord("nested too deeply (a record is an object of plain values)") from None
    user = raw.user
    if type(user) is not str:
        if user is None:
            raise InvalidRecord("no `user`")
        user = str(user)
    elif not user:
        raise InvalidRecord("no `user`")
    ts = raw.ts
    if type(ts) is int and 0 <= ts < _LAST_SECOND:  # epoch seconds, the common case: no call
        ts *= US
    elif ts is None:
        raise InvalidRecord("no `ts`")
    else:
        ts = _instant(ts)
    kind = raw.type
    if kind == "event":
        if not raw.name:
            raise InvalidRecord("an event without `name`")
        return Event(user, ts, raw.name, raw.props or {})
    if kind == "profile":
        return Profile(user, ts, raw.props or {})
    if kind == "subscribe":
        if raw.device_token:
            return Subscribe(user, ts, raw.platform or "safari", device_token=raw.device_token)
        if not raw.endpoint or not raw.keys or not raw.keys.get("p256dh") or not raw.keys.get("auth"):
            raise InvalidRecord("a subscription needs `endpoint` and `keys` (p256dh, auth), or `device_token`")
        platform = raw.platform or ""
        if platform not in PLATFORMS:
            raise InvalidRecord(f"unknown platform {platform!r} (one of {', '.join(PLATFORMS)})")
        return Subscribe(user, ts, platform, raw.endpoint, raw.keys)
    if kind == "unsubscribe":
        if not raw.endpoint and not raw.device_token:
            raise InvalidRecord("an unsubscribe needs `endpoint` or `device_token`")
        return Unsubscribe(user, ts, raw.endpoint, raw.device_token)
    raise InvalidRecord(f"unknown type {kind!r} (event, profile, subscribe or unsubscribe)")


def _instant(value: str | int | float) -> int:
    if isinstance(value, str):
        try:
            instant = parse_instant(value)
        except (ValueError, OverflowError):
            raise InvalidRecord(f"`ts` {value!r} is not an ISO-8601 date-time with a zone") from None
        if not 0 <= instant < _LAST_SECOND * US:  # the range epoch seconds have too
            raise InvalidRecord(f"`ts` {value!r} is not between 1970 and 9999")
        return instant
    if isinstance(value, bool):
        raise InvalidRecord("`ts` must be a date-time or epoch seconds")
    if not 0 <= value < _LAST_SECOND:
        hint = " (milliseconds? `ts` is in seconds)" if 0 <= value / 1000 < _LAST_SECOND else ""
        raise InvalidRecord(f"`ts` {value!r} is not epoch seconds between 1970 and 9999{hint}")
    return round(value * US)


_LAST_SECOND = 253_402_300_800  # 10000-01-01T00:00:00Z


def _validation_reason(message: str) -> str:
    # msgspec: "Expected `str | null`, got `array` - at `$.name`"
    if message.startswith("Expected `object`"):
        return "not a JSON object"
    if " - at `$." in message:
        what, _, where = message.partition(" - at `$.")
        return f"`{where.rstrip('`')}`: {what[0].lower()}{what[1:]}"
    return message


def read_records(lines: Iterable[bytes | str], rejects: list[Reject] | None = None) -> Iterator[Record]:
    """The valid records of JSON lines (1-based line numbers); blank lines are skipped."""
    for number, line in enumerate(lines, 1):
        if not line or line.isspace():
            continue
        try:
            yield decode_record(line)
        except InvalidRecord as exc:
            if rejects is not None:
                text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
                rejects.append(Reject(number, str(exc), text.rstrip("\r\n")))


@contextlib.contextmanager
def open_records(path: str) -> Iterator[IO[bytes]]:
    """The lines of a records file (``.gz`` read compressed), or of standard input for ``-``.
    ValueError, in words, when it cannot be opened."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = cast(IO[bytes], gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb"))  # noqa: SIM115
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield handle


def body_items(body: bytes) -> list[bytes]:
    """The records of an HTTP body, one JSON text each: JSON Lines or a JSON array (ValueError if broken)."""
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        try:
            return [msgspec.json.encode(x) for x in msgspec.json.decode(stripped)]
        except msgspec.DecodeError as exc:
            raise ValueError(f"the body is not valid JSON: {exc}") from None
        except RecursionError:  # one element nested too deeply: split the array, that one is rejected alone
            return _array_items(stripped)
    return [line for line in body.splitlines() if line.strip()]


def _array_items(text: bytes) -> list[bytes]:
    """The top-level elements of a JSON array, as text, without parsing them (ValueError if broken)."""
    items: list[bytes] = []
    depth, start, in_string, escaped = 0, 1, False, False
    for i, byte in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
        elif byte in b"]}":
            depth -= 1
            if depth == 0:
                if text[i + 1:].strip():
                    raise ValueError("the body is not valid JSON: trailing characters after the array")
                if text[start:i].strip():
                    items.append(text[start:i].strip())
                return items
        elif byte == 0x2C and depth == 1:  # comma
            items.append(text[start:i].strip())
            start = i + 1
    raise ValueError("the body is not valid JSON: the array is not closed")


def decode_body(body: bytes) -> tuple[list[tuple[int, Record]], list[dict[str, Any]]]:
    """The valid records of an HTTP body with their 0-based index, and each bad one as
    ``{"index", "reason"}``."""
    try:
        items = body_items(body)
    except ValueError as exc:
        return [], [{"index": None, "reason": str(exc)}]
    return decode_items(items)


def decode_items(items: list[bytes]) -> tuple[list[tuple[int, Record]], list[dict[str, Any]]]:
    """The valid records of a body's items (:func:`body_items`) with their 0-based index, and each
    bad one as ``{"index", "reason"}``."""
    records: list[tuple[int, Record]] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            records.append((index, decode_record(item)))
        except InvalidRecord as exc:
            rejected.append({"index": index, "reason": str(exc)})
    return records, rejected
