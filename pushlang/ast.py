"""The syntax tree of .push files: frozen nodes, each with the span it came from."""

from __future__ import annotations

import msgspec

from pushlang.source import Span

# ---- expressions (SPEC §6) ---------------------------------------------------------------------


class Literal(msgspec.Struct, frozen=True, gc=False):
    """A constant. ``kind``: string, number, bool, null, duration (seconds), percent,
    datetime (naive local ISO text), time (HH:MM:SS)."""

    kind: str
    value: str | int | float | bool | None
    span: Span


class ListExpr(msgspec.Struct, frozen=True):
    items: tuple[Expr, ...]
    span: Span


class Prop(msgspec.Struct, frozen=True, gc=False):
    """``user.x``, ``event.a.b``, ``trigger["First Name"]``."""

    root: str
    path: tuple[str, ...]
    span: Span

    def dotted(self) -> str:
        return ".".join((self.root, *self.path))


class Call(msgspec.Struct, frozen=True):
    name: str
    args: tuple[Expr, ...]
    span: Span
    name_span: Span


class Unary(msgspec.Struct, frozen=True):
    """``not x`` or ``-x``."""

    op: str
    operand: Expr
    span: Span


class Binary(msgspec.Struct, frozen=True):
    """Comparisons, ``in``/``not in``/``contains``/``starts with``/``ends with``, ``and``/``or``,
    and arithmetic. ``op`` is the operator as written (``starts with`` has one space)."""

    op: str
    left: Expr
    right: Expr
    span: Span


class Exists(msgspec.Struct, frozen=True, gc=False):
    prop: Prop
    span: Span


class SegmentRef(msgspec.Struct, frozen=True, gc=False):
    name: str
    span: Span
    name_span: Span


class Did(msgspec.Struct, frozen=True):
    """``did [not] "E" [where X] [at least|at most|exactly N times] in last D``."""

    event: str
    negated: bool
    where: Expr | None
    count_op: str | None  # "at least", "at most", "exactly"
    count: int | None
    window: int  # seconds
    span: Span
    event_span: Span
    window_span: Span


class IfThen(msgspec.Struct, frozen=True):
    """``if cond then then else else_``: ``then`` when ``cond`` is true, else ``else_``."""

    cond: Expr
    then: Expr
    else_: Expr
    span: Span


Expr = Literal | ListExpr | Prop | Call | Unary | Binary | Exists | SegmentRef | Did | IfThen

# ---- message texts (SPEC §7) -------------------------------------------------------------------


class Filter(msgspec.Struct, frozen=True):
    name: str
    arg: Expr | None
    span: Span


class TextPart(msgspec.Struct, frozen=True, gc=False):
    text: str


class Interpolation(msgspec.Struct, frozen=True):
    """``@user.x`` or ``@{expr | filter: arg}``."""

    expr: Expr
    filters: tuple[Filter, ...]
    span: Span


class Text(msgspec.Struct, frozen=True):
    """A message string with its personalisations."""

    parts: tuple[TextPart | Interpolation, ...]
    span: Span


# ---- message fields ----------------------------------------------------------------------------


class TextField(msgspec.Struct, frozen=True):
    """title, body, url, image, icon."""

    name: str
    text: Text
    span: Span


class IconDefault(msgspec.Struct, frozen=True, gc=False):
    icon: str
    span: Span
    name_span: Span
    name: str = "icon"


class Ttl(msgspec.Struct, frozen=True, gc=False):
    seconds: int
    span: Span
    name: str = "ttl"


class RequireInteraction(msgspec.Struct, frozen=True, gc=False):
    span: Span
    name: str = "require interaction"


class Button(msgspec.Struct, frozen=True):
    label: Text
    url: Text
    span: Span
    name: str = "button"


class Tag(msgspec.Struct, frozen=True, gc=False):
    tag: str
    span: Span
    name: str = "tag"


class Urgency(msgspec.Struct, frozen=True, gc=False):
    level: str
    span: Span
    name: str = "urgency"


MessageField = TextField | IconDefault | Ttl | RequireInteraction | Button | Tag | Urgency


class LangBlock(msgspec.Struct, frozen=True):
    """``lang "TAG" { FIELD… }`` inside a message, a variant or a template (SPEC §12.5)."""

    tag: str  # as written
    fields: tuple[MessageField, ...]
    span: Span
    tag_span: Span

# ---- campaign items ----------------------------------------------------------------------------


class Labels(msgspec.Struct, frozen=True):
    labels: tuple[str, ...]
    span: Span


class Name(msgspec.Struct, frozen=True, gc=False):
    """A word from a fixed set (platform, weekday) with where it was written."""

    value: str
    span: Span


class Platforms(msgspec.Struct, frozen=True):
    platforms: tuple[Name, ...]
    span: Span


class Unless(msgspec.Struct, frozen=True):
    event: str
    where: Expr | None
    within: int  # seconds
    span: Span
    event_span: Span
    within_span: Span


class OnTrigger(msgspec.Struct, frozen=True):
    """A live trigger: single action, inaction within time (``unless``) or on a date (``at``)."""

    event: str
    where: Expr | None
    unless: Unless | None
    at: Expr | None
    span: Span
    event_span: Span


class Schedule(msgspec.Struct, frozen=True):
    """``send ...``. ``kind``: once, dates (``datetimes``); daily, weekly (``weekdays``), monthly
    (``day``, or ``last_day``), every (``interval`` days) — the recurring kinds, at ``times``."""

    kind: str
    datetimes: tuple[Literal, ...]
    times: tuple[Literal, ...]  # as written: in their order, a repeated one kept
    weekdays: tuple[Name, ...]
    day: int | None
    span: Span
    day_span: Span | None = None
    last_day: bool = False  # `send every month on last day`
    interval: int | None = None  # `send every N days`
    interval_span: Span | None = None

    @property
    def recurring(self) -> bool:
        return self.kind not in ("once", "dates")


class Who(msgspec.Struct, frozen=True):
    conditions: tuple[Expr, ...]
    span: Span


class WhenItem(msgspec.Struct, frozen=True):
    """One line of ``when``. ``kind``: start, end, timezone, dnd, ignore_global_limits, limit,
    throttle, priority, user_timezone, best_time, cutoff; ``values`` holds its literals. A ``limit`` is the
    count and its period: a string (day, week, campaign) or a duration (rolling, in seconds); a
    ``throttle`` the count and minute or hour; a ``priority`` the number (its span takes the sign); a
    ``best_time`` its `between` times (kind time), then its `by` events (kind string)."""

    kind: str
    values: tuple[Literal, ...]
    span: Span


class When(msgspec.Struct, frozen=True):
    items: tuple[WhenItem, ...]
    span: Span


class Message(msgspec.Struct, frozen=True):
    """``message { ... }`` or ``message use NAME [{ ... }]``; with ``variant`` set, one variant of an
    A/B test, ``message ID P% ...`` (``weight`` is P, a percent)."""

    use: str | None
    fields: tuple[MessageField, ...]
    span: Span
    use_span: Span | None = None
    variant: str | None = None
    weight: float | None = None
    variant_span: Span | None = None
    weight_span: Span | None = None
    langs: tuple[LangBlock, ...] = ()  # its `lang "TAG" { ... }` blocks, in the order written


class Control(msgspec.Struct, frozen=True, gc=False):
    percent: float
    span: Span


class Conversion(msgspec.Struct, frozen=True):
    event: str
    where: Expr | None
    within: int
    revenue: Expr | None
    span: Span
    event_span: Span
    within_span: Span


class WinnerTest(msgspec.Struct, frozen=True, gc=False):
    """``test P% then winner by clicks|conversions after D`` (SPEC §12.4)."""

    percent: float
    by: str  # clicks | conversions
    after: int  # seconds
    span: Span
    percent_span: Span
    winner_span: Span
    by_span: Span  # the word after `by`
    after_span: Span  # the duration


CampaignItem = Labels | Platforms | OnTrigger | Schedule | Who | When | Message | Control | Conversion | WinnerTest

# ---- top level ---------------------------------------------------------------------------------


class Import(msgspec.Struct, frozen=True, gc=False):
    target: str
    span: Span


class SegmentDef(msgspec.Struct, frozen=True):
    name: str
    conditions: tuple[Expr, ...]
    span: Span
    name_span: Span


class TemplateDef(msgspec.Struct, frozen=True):
    name: str
    fields: tuple[MessageField, ...]
    span: Span
    name_span: Span
    langs: tuple[LangBlock, ...] = ()


class CampaignDef(msgspec.Struct, frozen=True):
    id: str
    display_name: str | None
    items: tuple[CampaignItem, ...]
    span: Span
    id_span: Span


TopLevel = Import | SegmentDef | TemplateDef | CampaignDef


class Module(msgspec.Struct, frozen=True):
    """One parsed file."""

    path: str
    items: tuple[TopLevel, ...]
