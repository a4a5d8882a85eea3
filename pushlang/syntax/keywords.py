"""The words of the language (grammar/pushlang.lark), for everything that is not the parser: the
Pygments lexer, the REPL's completion, editors. A test checks this list against the grammar."""

from __future__ import annotations

DECLARATIONS = ("campaign", "segment", "template", "import")
BLOCKS = ("who", "when", "message", "use")  # what opens a block of a campaign, and `message use NAME`
CONSTANTS = ("true", "false", "null")
# Every other word, in the grammar's order: campaign items, triggers and schedules, `when`, messages,
# control and conversions, the winner test, conditions (`then` of `if … then … else` is the winner test's).
WORDS = (
    "labels", "platforms",
    "on", "where", "unless", "within", "at", "send", "once", "every", "day", "month", "days",
    "start", "end", "timezone", "dnd", "to", "discard", "delay", "ignore", "global", "limits", "limit", "per",
    "week", "throttle", "minute", "hour", "priority", "deliver", "in", "user", "best", "between", "cutoff",
    "title", "body", "url", "image", "icon", "default", "ttl", "require", "interaction", "button", "tag",
    "urgency", "lang",
    "control", "group", "conversion", "revenue",
    "test", "then", "winner", "by", "clicks", "conversions", "after",
    "did", "not", "least", "most", "exactly", "times", "time", "last", "and", "or", "exists", "contains",
    "starts", "ends", "with", "if", "else",
)
KEYWORDS = DECLARATIONS + BLOCKS + CONSTANTS + WORDS

# What may follow where, for completion: the first word of each `when` item, the periods after
# `per` (`limit N per day|week|campaign` or a duration, `throttle N per minute|hour`), and what a
# winner is chosen by.
WHEN_ITEMS = ("start", "end", "timezone", "dnd", "ignore", "limit", "throttle", "priority", "deliver", "cutoff")
# The rest of a `deliver` item, and the options of `deliver at best time`, in the grammar's order:
# `deliver at best time [between HH:MM and HH:MM] [by "E", …]`.
DELIVER_MODES = ("in user timezone", "at best time")
BEST_TIME_OPTIONS = ("between", "by")
LIMIT_PERIODS = ("day", "week", "campaign")
THROTTLE_PERIODS = ("minute", "hour")
# What a winner is chosen by: `test P% then winner by clicks|conversions after D`.
WINNER_METRICS = ("clicks", "conversions")
