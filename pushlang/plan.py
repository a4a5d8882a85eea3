"""The checked execution plan: frozen msgspec Structs, the only thing the runtime reads."""

from __future__ import annotations

import msgspec

from pushlang.settings import Settings as Settings  # part of the plan (Plan.settings)

FORMAT_VERSION = 5  # 2: several times of day, every N days, last day, rolling limits, throttle, priority;
#                    3: variants and winner tests; 4: languages (Message.langs); 5: best time


class _Node(msgspec.Struct, frozen=True, tag_field="node", tag=True, forbid_unknown_fields=True):
    pass


# ---- expressions -------------------------------------------------------------------------------


class Const(_Node, frozen=True):
    """A constant. ``kind``: string, number, bool, null, duration (seconds), percent,
    datetime (naive ISO text in the campaign's timezone), time (HH:MM:SS)."""

    kind: str
    value: str | int | float | bool | None


class ListOf(_Node, frozen=True):
    items: tuple[Expr, ...]


class Var(_Node, frozen=True):
    """A property: ``root`` is user, event or trigger; ``path`` its keys."""

    root: str
    path: tuple[str, ...]


class Call(_Node, frozen=True):
    function: str
    args: tuple[Expr, ...]


class Not(_Node, frozen=True):
    operand: Expr


class Neg(_Node, frozen=True):
    operand: Expr


class BinOp(_Node, frozen=True):
    """``op``: and, or, == != < <= > >=, in, not in, contains, starts with, ends with, + - * /."""

    op: str
    left: Expr
    right: Expr


class Exists(_Node, frozen=True):
    var: Var


class InSegment(_Node, frozen=True):
    segment: str


class DidEvent(_Node, frozen=True):
    """Behaviour: how many matching events the user did in (t − window, t] compared to a count.

    ``did "E"`` is ``at least 1``; ``did not "E"`` is ``exactly 0``.
    """

    event: str
    where: Expr | None
    count_op: str  # "at least", "at most", "exactly"
    count: int
    window: int  # seconds


class IfThen(_Node, frozen=True):
    """``if cond then … else …``: ``then`` when ``cond`` is true; false, missing or not a boolean
    gives ``else_``."""

    cond: Expr
    then: Expr
    else_: Expr


Expr = Const | ListOf | Var | Call | Not | Neg | BinOp | Exists | InSegment | DidEvent | IfThen

# ---- message texts -----------------------------------------------------------------------------


class Filter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    arg: Expr | None = None


class Literal(_Node, frozen=True):
    text: str


class Personalised(_Node, frozen=True):
    expr: Expr
    filters: tuple[Filter, ...] = ()


class Text(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    parts: tuple[Literal | Personalised, ...]


class Button(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    label: Text
    url: Text


class Message(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    title: Text
    body: Text
    url: Text | None = None
    image: Text | None = None
    icon: Text | None = None
    ttl: int | None = None  # seconds; None: the config's default_ttl
    require_interaction: bool = False
    buttons: tuple[Button, ...] = ()
    tag: str | None = None
    urgency: str | None = None
    # its `lang` blocks (SPEC §12.5), the template's merged in: each a whole message in that language
    langs: tuple[LangTexts, ...] = ()


class LangTexts(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A message in one language: ``tag`` as written, and every field by the precedence of SPEC §12.5
    (the campaign's `lang` block, the campaign's field, the template's `lang` block, the template's
    field); its ``message`` has no ``langs`` of its own."""

    tag: str
    message: Message


# ---- triggers and schedules (SPEC §3) ----------------------------------------------------------


class SingleAction(_Node, frozen=True):
    event: str
    where: Expr | None = None


class InactionWithin(_Node, frozen=True):
    event: str
    where: Expr | None
    unless_event: str
    unless_where: Expr | None
    within: int  # seconds


class OnDate(_Node, frozen=True):
    event: str
    where: Expr | None
    at: Expr


class SendOnce(_Node, frozen=True):
    at: str  # naive local date-time


class SendDates(_Node, frozen=True):
    at: tuple[str, ...]


class SendDaily(_Node, frozen=True):
    times: tuple[str, ...]  # HH:MM:SS local, ascending, no two equal (each is an occurrence)


class SendWeekly(_Node, frozen=True):
    weekdays: tuple[int, ...]  # ISO: Monday 1 … Sunday 7
    times: tuple[str, ...]


class SendMonthly(_Node, frozen=True):
    day: int  # 1–31 (months without it are skipped); LAST_DAY: the last day of every month
    times: tuple[str, ...]


LAST_DAY = 0  # SendMonthly.day of `send every month on last day`


class SendEvery(_Node, frozen=True):
    """`send every N days at …`: on ``since`` (the local date of `start` in the campaign's zone) and
    every ``days`` days after it."""

    days: int
    since: str  # YYYY-MM-DD
    times: tuple[str, ...]


Trigger = SingleAction | InactionWithin | OnDate
Schedule = SendOnce | SendDates | SendDaily | SendWeekly | SendMonthly | SendEvery

# ---- when, control, conversion -----------------------------------------------------------------


class Dnd(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: str  # HH:MM:SS local
    end: str
    mode: str  # discard | delay


class Limit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    count: int
    period: str  # day | week | campaign (calendar, in the user's local time) | rolling
    window: int = 0  # rolling: the window's length in seconds, (t − window, t]


class Throttle(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`throttle N per minute|hour` (SPEC §12.1): at most ``count`` sends in one UTC period."""

    count: int
    period: int  # seconds: 60 or 3600


class BestTime(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`deliver at best time [between HH:MM and HH:MM] [by "E", …]` (SPEC §12.6)."""

    start: str | None = None  # `between`: [start, end) in the user's local time, HH:MM:SS; end < start spans midnight
    end: str | None = None
    events: tuple[str, ...] = ()  # `by`: the events scored; none: every event


class Conversion(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event: str
    within: int  # seconds
    where: Expr | None = None
    revenue: Expr | None = None


class Variant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One message of an A/B test (SPEC §12.3): `message ID P% { … }` or `message ID P% use TEMPLATE { … }`."""

    id: str
    weight: int  # basis points: round(P × 100); a campaign's weights sum to exactly 10000
    message: Message  # the template, if any, already applied


class WinnerTest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`test P% then winner by clicks|conversions after D` (SPEC §12.4)."""

    percent: float  # the test group: P percent of the users
    by: str  # clicks | conversions
    after: int  # seconds: D


class Campaign(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    name: str
    file: str
    trigger: Trigger | Schedule
    message: Message  # the one message; with variants, the first variant's
    timezone: str
    audience: Expr | None = None
    labels: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ("chrome", "firefox", "edge", "safari")
    start: str | None = None  # naive local date-times in ``timezone``
    end: str | None = None
    dnd: Dnd | None = None
    ignore_global_limits: bool = False
    limits: tuple[Limit, ...] = ()
    throttle: Throttle | None = None
    priority: int = 0  # −100..100 (SPEC §12.2)
    deliver_in_user_timezone: bool = False
    best_time: BestTime | None = None
    cutoff: str | None = None
    control_percent: float = 0.0
    conversion: Conversion | None = None
    variants: tuple[Variant, ...] = ()  # 2–8 in the order written, or none (the one `message`)
    test: WinnerTest | None = None

    @property
    def is_live(self) -> bool:
        return isinstance(self.trigger, (SingleAction, InactionWithin, OnDate))

    def message_of(self, variant: str | None, lang: str | None = None) -> Message:
        """The message a decision with this variant and language was rendered from (its ttl, urgency, tag,
        buttons…): the variant's, else the campaign's one message; in language ``lang`` (a tag as written)."""
        message = next((v.message for v in self.variants if v.id == variant), self.message)
        return next((x.message for x in message.langs if x.tag == lang), message)

    def lang_tags(self) -> tuple[str, ...]:
        """Every `lang` tag of its messages, as written, each once."""
        return tuple(dict.fromkeys(x.tag for m in self.messages for x in m.langs))

    @property
    def messages(self) -> tuple[Message, ...]:
        """Every message the campaign can send: its variants', or its one message."""
        return tuple(v.message for v in self.variants) or (self.message,)


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format_version: int
    campaigns: tuple[Campaign, ...]
    segments: dict[str, Expr]
    settings: Settings

    def campaign(self, campaign_id: str) -> Campaign | None:
        return next((c for c in self.campaigns if c.id == campaign_id), None)


def to_json(plan: Plan) -> bytes:
    return msgspec.json.format(msgspec.json.encode(plan), indent=2)


def from_json(data: bytes | str) -> Plan:
    return msgspec.json.decode(data, type=Plan)
