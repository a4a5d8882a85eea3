"""The event schema (``--schema``): known events, their properties, and profile properties."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from pushlang.diagnostics import Sink, codes
from pushlang.source import Span

PropertyType = Literal["string", "number", "boolean", "datetime", "list", "object"]

# Properties every user and every event has, whatever the schema says.
BUILTIN_USER = {"id"}
BUILTIN_EVENT = {"name", "ts"}


class PropertySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: PropertyType = "string"
    required: bool = False


# Profile properties the runtime itself reads, known to every schema (a schema may say more of them):
# `timezone` (the user's zone, SPEC §5) and `language` (the `lang` block they get, SPEC §12.5).
RUNTIME_USER = {"timezone": PropertySpec("string"), "language": PropertySpec("string")}


class Schema(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    profile: dict[str, PropertySpec] = {}
    events: dict[str, dict[str, PropertySpec]] = {}

    @property
    def user_properties(self) -> dict[str, PropertySpec]:
        """The profile's properties: the schema's, and those the runtime reads (never guaranteed)."""
        return {**RUNTIME_USER, **self.profile}

    def properties(self, root: str, event: str | None) -> dict[str, PropertySpec] | None:
        """The known properties of ``user`` or of an event; None when nothing is known."""
        if root == "user":
            return self.user_properties
        return self.events.get(event) if event is not None else None

    def guarantees(self, root: str, event: str | None, name: str) -> bool:
        if (root == "user" and name in BUILTIN_USER) or (root != "user" and name in BUILTIN_EVENT):
            return True
        known = self.properties(root, event)
        return bool(known and name in known and known[name].required)


def load_schema(path: str, sink: Sink) -> Schema | None:
    """A schema from TOML or JSON; a broken one is a PL607 diagnostic and None."""
    line = 1
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
        return msgspec.convert(data, type=Schema)
    except OSError as exc:
        message = f"cannot read the schema: {exc.strerror}"
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        message = f"the schema is not valid {'JSON' if path.endswith('.json') else 'TOML'}: {exc}"
        line = int(m.group(1)) if (m := re.search(r"line (\d+)", str(exc))) else 1
    except msgspec.ValidationError as exc:
        culprit = _culprit(data)
        if culprit is None:
            message = f"the schema does not have the expected shape: {exc}"
        else:
            name, what, problem = culprit
            message = f"{what} in the schema: {problem}"
            line = _key_line(text, name)
    sink.report(codes.INVALID_SCHEMA, path, Span(line, 1, line, 2), message,
                help="see the README: [profile] and [events.\"Name\"] tables of {type, required}")
    return None


def _culprit(data: Any) -> tuple[str, str, str] | None:
    """The first key whose value does not fit (its name, what it is, what is wrong) — msgspec's
    own message hides dictionary keys as ``[...]``."""
    if not isinstance(data, dict):
        return None
    for key in data:
        if key not in ("profile", "events"):
            return key, f"`{key}`", "unknown table; the schema has [profile] and [events.\"Name\"]"
    tables = [("profile", "profiles", data.get("profile", {}))]
    events = data.get("events", {})
    if isinstance(events, dict):
        for event, props in events.items():
            if not isinstance(props, dict):
                return event, f'event "{event}"', "expected a table of properties"
            tables.append((event, f'"{event}" events', props))
    for table, owner, props in tables:
        if not isinstance(props, dict):
            return table, f"`{table}`", "expected a table of properties"
        for name, spec in props.items():
            try:
                msgspec.convert(spec, type=PropertySpec)
            except msgspec.ValidationError as exc:
                return name, f"property `{name}` of {owner}", str(exc).replace(" - at `$`", "")
    return None


def _key_line(text: str, key: str) -> int:
    """The first line where ``key`` is given a value or names a table (1 when not found)."""
    quoted = re.escape(key)
    m = re.search(rf"""^[^#\n]*?(?:^|[ \t{{,.\[])(["']?{quoted}["']?)[ \t]*(?:[=:]|\])""", text, re.MULTILINE)
    return text.count("\n", 0, m.start(1)) + 1 if m else 1
