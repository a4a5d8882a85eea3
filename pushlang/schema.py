"""The event schema (``--schema``): known events, their properties, and profile properties."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

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


class Schema(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    profile: dict[str, PropertySpec] = {}
    events: dict[str, dict[str, PropertySpec]] = {}

    def properties(self, root: str, event: str | None) -> dict[str, PropertySpec] | None:
        """The known properties of ``user`` or of an event; None when nothing is known."""
        if root == "user":
            return self.profile
        return self.events.get(event) if event is not None else None

    def guarantees(self, root: str, event: str | None, name: str) -> bool:
        if (root == "user" and name in BUILTIN_USER) or (root != "user" and name in BUILTIN_EVENT):
            return True
        known = self.properties(root, event)
        return bool(known and name in known and known[name].required)


def load_schema(path: str, sink: Sink) -> Schema | None:
    """A schema from TOML or JSON; a broken one is a PL607 diagnostic and None."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
        return msgspec.convert(data, type=Schema)
    except OSError as exc:
        message = f"cannot read the schema: {exc.strerror}"
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        message = f"the schema is not valid {'JSON' if path.endswith('.json') else 'TOML'}: {exc}"
    except msgspec.ValidationError as exc:
        message = f"the schema does not have the expected shape: {exc}"
    sink.report(codes.INVALID_SCHEMA, path, Span(1, 1, 1, 1), message,
                help="see the README: [profile] and [events.\"Name\"] tables of {type, required}")
    return None
