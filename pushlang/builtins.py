"""The names the language knows: functions, filters, platforms, weekdays, urgencies, events."""

from __future__ import annotations

import re

# name → (fewest arguments, most arguments, what it does)
FUNCTIONS: dict[str, tuple[int, int, str]] = {
    "lower": (1, 1, "a string in lower case"),
    "upper": (1, 1, "a string in upper case"),
    "len": (1, 1, "the length of a string or list"),
    "now": (0, 0, "the decision instant"),
    "days_since": (1, 1, "whole days from a date-time to the decision instant"),
    "date": (1, 1, "an ISO-8601 string or epoch seconds as a date-time"),
}

FILTERS: dict[str, tuple[int, int, str]] = {
    "default": (1, 1, "the value to use when the property is missing"),
    "upper": (0, 0, "upper case"),
    "lower": (0, 0, "lower case"),
    "capitalize": (0, 0, "the first letter in upper case"),
    "truncate": (1, 1, "the first n characters, then … if anything was cut"),
    "urlencode": (0, 0, "RFC 3986 percent-encoding"),
    "round": (1, 1, "a number with n decimals"),
}

PLATFORMS = ("chrome", "firefox", "edge", "safari")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
URGENCIES = ("very-low", "low", "normal", "high")

# Events the service worker reports itself (SPEC §9.1).
PUSH_EVENTS = ("Push Viewed", "Push Clicked")


LANG_TAG = re.compile(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*")
"""A language tag as SPEC §12.5 takes it (BCP 47 shaped): `lang` blocks, and a browser's `language`."""
