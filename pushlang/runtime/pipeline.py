"""The decision pipeline of SPEC §9.3: its steps, in order, written once.

The engine runs a campaign's steps for each decision; ``preview``, ``:why``, ``reach`` and
``send-test`` run the *same* steps through :func:`trace`, which records each step's verdict in words.
A step is pure: it reads the user's state and the attempt, and says ``None`` (go on) or a
:data:`Decision`. What a decision changes (counters, timers, windows, the outbox) is the engine's
to apply, so tracing a decision changes nothing.

Each campaign gets the steps it uses (no DND, no DND step; no limits, no limit step): a step the
campaign does not use costs nothing and is not shown in a trace.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Protocol

import msgspec

from pushlang import plan
from pushlang.config import is_timezone
from pushlang.runtime.campaigns import CompiledCampaign
from pushlang.runtime.evaluate import Env
from pushlang.runtime.instants import US, from_local, iso, wall
from pushlang.runtime.outcomes import (
    Control,
    Delay,
    PendingSend,
    QueuedSend,
    Rendered,
    Send,
    Skip,
    Suppress,
)
from pushlang.runtime.render import (
    MAX_PLAINTEXT,
    MessageRenderer,
    MissingProperty,
    payload_size,
    web_push_payload,
)
from pushlang.runtime.store import Subscription, UserState

# ---- what travels: a rendered send waiting for its moment (the Structs: outcomes.py) -----------------

encode_queued = msgspec.json.Encoder().encode  # a QueuedSend (or any struct) as JSON
decode_queued = msgspec.json.Decoder(QueuedSend).decode


def queued_from(entry: dict[str, Any], send_id: str | None = None) -> QueuedSend:
    """An outbox entry kept as a JSON object, as this version or an earlier one wrote it: the service's
    entries of before kept ``send_id`` in their key and their targets as subscription keys only."""
    entry = dict(entry)
    if send_id is not None:
        entry.setdefault("send_id", send_id)
    entry["targets"] = [{"key": t} if isinstance(t, str) else t for t in entry.get("targets", ())]
    return msgspec.convert(entry, QueuedSend)


def pending_from(payload: dict[str, Any]) -> PendingSend:
    """A delay timer's payload as a :class:`PendingSend` (every store keeps it as a JSON object)."""
    return msgspec.convert(payload, PendingSend)


def pending_payload(send: PendingSend) -> dict[str, object]:
    """What a delay timer keeps: the :class:`PendingSend` as a JSON object (SQLite and Redis write it so)."""
    payload: dict[str, object] = msgspec.to_builtins(send)
    return payload


# ---- decisions (the Structs: outcomes.py) ------------------------------------------------------------

Decision = Send | Control | Delay | Suppress | Skip


# ---- the rules the steps (and only they) apply -------------------------------------------------------


def send_id_for(campaign: str, user: str, trigger: int, ordinal: int = 0) -> str:
    """Stable for the same campaign, user and trigger instant, so a restart never sends twice; the
    second, third… decision of one campaign for one user at one instant also hashes its ordinal
    1, 2… (SPEC §9.4), so neither is lost."""
    text = f"{campaign}\x1f{user}\x1f{trigger}" + (f"\x1f{ordinal}" if ordinal else "")
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def bucket(text: str) -> int:
    """``int(sha256(text)[:8], 16) % 10000``: the basis point a user falls on (SPEC §8, §12.3, §12.4)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10000


def in_control_group(campaign: str, user: str, percent: float) -> bool:
    """SPEC §8: ``int(sha256(campaign + ":" + user)[:8], 16) % 10000 < P × 100``."""
    return bucket(f"{campaign}:{user}") < percent * 100


def in_global_holdout(user: str, percent: float) -> bool:
    """SPEC §8: ``int(sha256("global:" + user)[:8], 16) % 10000 < P × 100``: held out of every campaign."""
    return bool(percent) and bucket(f"global:{user}") < percent * 100


def in_test_group(campaign: str, user: str, percent: float) -> bool:
    """SPEC §12.4: ``int(sha256(campaign + ":test:" + user)[:8], 16) % 10000 < P × 100``."""
    return bucket(f"{campaign}:test:{user}") < percent * 100


def variant_of(c: CompiledCampaign, user: str) -> str:
    """SPEC §12.3: the user's bucket ``sha256(campaign + ":variant:" + user)``, in the variants' consecutive
    ranges of their weights (basis points), in the order written."""
    b = bucket(f"{c.id}:variant:{user}")
    return next(variant for upper, variant in c.variant_ranges if b < upper)


def language_of(message: plan.Message, profile: dict[str, Any], language: str | None = None) -> str | None:
    """SPEC §12.5: the tag (as written) of the message's `lang` block for the user's profile `language`
    (or ``language``, when given), by RFC 4647 lookup; None: the message's own texts."""
    return language_match(message, profile, language)[0]


def language_match(message: plan.Message, profile: dict[str, Any], language: str | None = None
                   ) -> tuple[str | None, str]:
    """:func:`language_of`, and why in words. The user's tag is read case-insensitively with `_` as
    `-`; it matches a block of that tag, else of ever shorter prefixes (`zh-Hant-TW` → `zh-Hant` →
    `zh`; a single-letter subtag left at the end goes too). A shorter tag never matches a longer block:
    a user `pt` does not get `pt-BR`."""
    wanted = profile.get("language") if language is None else language
    if not message.langs:
        return None, "the message's own texts"
    if not isinstance(wanted, str) or not wanted.strip():
        return None, "no profile `language`: the message's own texts"
    tags = {lang.tag.lower(): lang.tag for lang in message.langs}
    key = wanted.strip().replace("_", "-").lower()
    first = key
    while key:
        if key in tags:
            tag = tags[key]
            how = f'the user\'s "{wanted}" matches exactly' if key == first else \
                f'falls back to "{tag}" from the user\'s "{wanted}"'
            return tag, f'language "{tag}": {how}'

        key = key.rpartition("-")[0]
        while len(key.rpartition("-")[2]) == 1 and "-" in key:  # RFC 4647 3.4: drop a singleton too
            key = key.rpartition("-")[0]
    return None, f'no block for "{wanted}": the message\'s own texts'


@lru_cache(maxsize=4096)
def valid_zone(zone: str) -> bool:
    return is_timezone(zone)


def user_zone(c: CompiledCampaign, state: UserState) -> str:
    """The user's local time zone: the profile's `timezone`, else the campaign's (SPEC §5)."""
    zone = state.profile.get("timezone")
    return zone if isinstance(zone, str) and valid_zone(zone) else c.tz


def period_keys(at: int, zone: str) -> dict[str, str]:
    """The limit periods an instant falls in, in a zone: local calendar day, ISO week, ever.
    (Shared: the caller must not change the dict.)"""
    return _periods_of_day(wall(at, zone).toordinal())


@lru_cache(maxsize=1024)
def _periods_of_day(ordinal: int) -> dict[str, str]:
    day = dt.date.fromordinal(ordinal)
    year, week, _ = day.isocalendar()
    return {"day": day.isoformat(), "week": f"{year}-W{week:02d}", "campaign": "all"}


@lru_cache(maxsize=256)
def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


def dnd_until(dnd: plan.Dnd, at: int, zone: str) -> int | None:
    """The end of the DND period ``at`` falls in, in the user's local time; None outside DND."""
    now = wall(at, zone)
    seconds = now.hour * 3600 + now.minute * 60 + now.second
    start, end = _seconds(dnd.start), _seconds(dnd.end)
    inside = start <= seconds < end if start < end else (seconds >= start or seconds < end)
    if not inside:
        return None
    day = now.toordinal()
    if seconds >= end:  # the DND period started today and ends tomorrow
        day += 1
    return _local_instant(day, dnd.end, zone)


@lru_cache(maxsize=4096)
def _local_instant(day: int, hms: str, zone: str) -> int:
    """``hms`` on the proleptic ordinal ``day`` in ``zone``: the DND ends of a day, worked out once."""
    return from_local(f"{dt.date.fromordinal(day).isoformat()}T{hms}", zone)


def reachable(c: CompiledCampaign, state: UserState) -> list[Subscription]:
    """The user's active subscriptions on a platform the campaign allows."""
    platforms = c.plan.platforms
    return [s for s in state.subscriptions.values() if s.active and s.platform in platforms]


def safari_rule(platform: str, has_url: bool) -> bool:
    """SPEC §7: a message without a url cannot go to Safari (a url that renders empty is no url)."""
    return has_url or platform != "safari"


def deliverable(subscriptions: list[Subscription], has_url: bool) -> list[Subscription]:
    """The subscriptions a message can go to (the Safari rule); the same list when it has a url."""
    return subscriptions if has_url else [s for s in subscriptions if safari_rule(s.platform, has_url)]


def channels(campaign: plan.Campaign) -> tuple[str, ...]:
    """The platforms a campaign's sends can go to: its own, by the Safari rule (`reach` counts these)."""
    has_url = campaign.message.url is not None
    return tuple(p for p in campaign.platforms if safari_rule(p, has_url))


def targets(c: CompiledCampaign, state: UserState, send: PendingSend) -> tuple[Subscription, ...]:
    """Where a send goes now: the subscriptions still active and deliverable when it is sent."""
    return tuple(deliverable(reachable(c, state), bool(send.url)))


def cutoff_instant(c: CompiledCampaign, send: PendingSend) -> int | None:
    """The cut-off on a scheduled occurrence's date, in the schedule's zone (SPEC §5); None without one."""
    if c.plan.cutoff is None or not send.date:
        return None
    return from_local(f"{send.date}T{c.plan.cutoff}", send.zone or c.tz)


def limit_key(campaign: str, period: str) -> str:
    """The per-user counter of a campaign's sends in a period (``all`` for per campaign); the
    campaign's ``counter_prefix`` is this with the period left out."""
    return f"{campaign}|{period}"


def global_key(period: str) -> str:
    """The per-user counter of sends of every campaign in a local day or ISO week (``*|@…``: at an
    instant, the user's last send, for `min_gap`)."""
    return f"*|{period}"


ROLLING = "@"  # a counter's period ``@<µs>``: this campaign's sends at that instant, for rolling windows
LAST_SEND = global_key("last")  # not a count: the instant (µs) of the user's last send of any campaign


def sent_since(counters: dict[str, int], prefix: str, since: int) -> int:
    """Sends counted under ``prefix`` (``campaign|@``) at instants after ``since``."""
    n = len(prefix)
    return sum(v for k, v in counters.items() if k.startswith(prefix) and int(k[n:]) > since)


def throttle_period(throttle: plan.Throttle, at: int) -> int:
    """The start (µs) of the UTC minute or hour ``at`` falls in."""
    length = throttle.period * US
    return at - at % length


class Slots(Protocol):
    """What the throttle step reads of a store: the sends and reserved slots of a campaign's periods."""

    def throttle_count(self, campaign: str, period: int) -> int: ...
    def throttle_room(self, campaign: str, period: int, length: int, cap: int) -> int: ...


# ---- one decision being made -------------------------------------------------------------------------

_NO_ENV = Env("", {}, 0)  # a decision made again reads no expression


class Attempt:
    """One decision for one user at one instant: what the steps read and what they leave for the next.

    ``env`` is what the campaign's expressions read (the steps of a new decision need it); ``send`` is
    set by the render step, or given when a delayed decision is made again (no expression is read)."""

    __slots__ = (
        "_periods",
        "_send_id",
        "_zone",
        "at",
        "c",
        "chosen",
        "date",
        "env",
        "given",
        "lang",
        "language",
        "ordinal",
        "schedule_zone",
        "send",
        "settings",
        "slots",
        "state",
        "subscriptions",
        "trigger_at",
        "variant",
    )

    def __init__(self, c: CompiledCampaign, state: UserState, at: int, settings: plan.Settings,
                 env: Env = _NO_ENV, trigger_at: int | None = None, date: str | None = None,
                 schedule_zone: str | None = None, send: PendingSend | None = None, *,
                 slots: Slots | None = None, ordinal: int = 0, variant: str | None = None,
                 language: str | None = None) -> None:
        self.c = c
        self.state = state
        self.at = at
        self.settings = settings
        self.env = env
        self.trigger_at = at if trigger_at is None else trigger_at
        self.date = date
        self.schedule_zone = schedule_zone
        self.send = send
        self.slots = slots  # the store's throttle periods (None: a throttle is not checked)
        self.ordinal = ordinal  # the n-th decision of this campaign for this user at this instant, from 0
        # the variant: given (a test's winner), else chosen by the render step (a delayed decision: its send's)
        self.variant = variant if send is None else send.variant
        self.chosen = send is not None  # whether the render step has taken the variant (SPEC §9.4)
        self.given = variant is not None and send is None  # a test's winner, not the user's own bucket
        # the `lang` tag of the texts: chosen by the render step (a delayed decision: its send's)
        self.lang = None if send is None else send.lang
        self.language = language  # read instead of the profile's `language` (`send-test --lang`)
        self.subscriptions: list[Subscription] = []
        self._send_id: str | None = None if send is None else send.send_id
        self._zone: str | None = None
        self._periods: dict[str, str] | None = None

    @property
    def send_id(self) -> str:
        """The decision's send_id (SPEC §9.4), hashed when first asked for: a skipped user never is."""
        if self._send_id is None:
            self._send_id = send_id_for(self.c.id, self.state.user, self.trigger_at, self.ordinal)
        return self._send_id

    @property
    def chosen_variant(self) -> str | None:
        """The variant a decision record carries: null before the render step has chosen one."""
        return self.variant if self.chosen else None

    @property
    def chosen_lang(self) -> str | None:
        """The language a decision record carries: null before the render step has chosen one."""
        return self.lang if self.chosen else None

    @property
    def zone(self) -> str:
        if self._zone is None:
            self._zone = user_zone(self.c, self.state)
        return self._zone

    @property
    def periods(self) -> dict[str, str]:
        if self._periods is None:
            self._periods = period_keys(self.at, self.zone)
        return self._periods



# ---- the steps ---------------------------------------------------------------------------------------


class Step:
    """One step of SPEC §9.3. ``again``: it runs too when a delayed decision is made again."""

    name: ClassVar[str]
    again: ClassVar[bool] = False

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        """Whether campaign ``c`` needs this step at all."""
        return True

    def decide(self, a: Attempt) -> Decision | None:
        raise NotImplementedError

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        """The verdict in words, for a trace (never on the engine's path)."""
        raise NotImplementedError


class CampaignEnded(Step):
    """1. ``campaign_ended``: the instant is at or after `end`."""

    name = "campaign_ended"
    again = True

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        return c.end is not None

    def decide(self, a: Attempt) -> Decision | None:
        end = a.c.end
        return _CAMPAIGN_ENDED if end is not None and a.at >= end else None

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        assert a.c.end is not None
        return f"{iso(a.at)} is {'at or after' if verdict else 'before'} end {iso(a.c.end)}"


class Audience(Step):
    """2. ``not_in_audience``: `who` is false (a scheduled campaign skips the user, with no record)."""

    name = "audience"

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        return c.plan.audience is not None

    def decide(self, a: Attempt) -> Decision | None:
        if a.c.audience(a.env):
            return None
        return _NOT_IN_AUDIENCE if a.c.is_live else _SKIP

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        if verdict is None:
            return "`who` holds"
        if isinstance(verdict, Skip):
            return "`who` is false: a scheduled campaign skips the user, with no record"
        return "`who` is false for this user"


class Reachable(Step):
    """3. ``unreachable``: no active subscription on an allowed platform."""

    name = "reachable"

    def decide(self, a: Attempt) -> Decision | None:
        a.subscriptions = subs = reachable(a.c, a.state)
        return None if subs else _UNREACHABLE

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        if verdict is None:
            return ", ".join(sorted({s.platform for s in a.subscriptions}))
        has = ", ".join(f"{s.platform}{'' if s.active else ' (inactive)'}" for s in a.state.subscriptions.values())
        return f"no active subscription on {', '.join(a.c.plan.platforms)}" + (f"; the user has: {has}" if has else "")


class ControlGroup(Step):
    """4. ``control``: the user is in the global holdout (reason ``global_holdout``) or in the campaign's
    control group (SPEC §8)."""

    name = "control"

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        return bool(c.plan.control_percent or settings.global_holdout)

    def decide(self, a: Attempt) -> Decision | None:
        c, user = a.c, a.state.user
        if in_global_holdout(user, a.settings.global_holdout):
            return _GLOBAL_HOLDOUT
        return _CONTROL if in_control_group(c.id, user, c.plan.control_percent) else None

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        holdout = a.settings.global_holdout
        if verdict is _GLOBAL_HOLDOUT:
            return f"in the {holdout:g}% global holdout: held out of every campaign" + _held_out_language(a)
        words = [f"not in the {holdout:g}% global holdout"] if holdout else []
        if a.c.plan.control_percent:
            percent = f"{a.c.plan.control_percent:g}%"
            words.append(f"in the {percent} control group: held out" if verdict else f"not in the {percent} control group")
        return "; ".join(words) + (_held_out_language(a) if verdict else "")


def _held_out_language(a: Attempt) -> str:
    """What a held-out user's record says of the language they would have got."""
    lang = control_lang(a)
    return "" if lang is None else f' (their language would have been "{lang}")'


class Render(Step):
    """5. ``missing_property``, ``safari_requires_url``, ``payload_too_large``: the message for this user."""

    name = "render"

    def decide(self, a: Attempt) -> Decision | None:
        c = a.c
        renderer, message = _message(a)
        try:
            rendered = renderer.render(a.env)
        except MissingProperty:
            return _MISSING_PROPERTY
        subs = deliverable(a.subscriptions, bool(rendered.url))
        if not subs:
            return _SAFARI_REQUIRES_URL
        if _may_exceed(rendered, MAX_PLAINTEXT) and _payload_size(c, message, rendered, a.send_id) > MAX_PLAINTEXT:
            return _PAYLOAD_TOO_LARGE
        a.send = PendingSend(send_id=a.send_id, title=rendered.title, body=rendered.body, url=rendered.url,
                             image=rendered.image, icon=rendered.icon, buttons=rendered.buttons,
                             platforms=_platforms(subs), date=a.date,
                             zone=a.schedule_zone, variant=a.variant, lang=a.lang)
        return None

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        chosen = _variant_words(a) + _language_words(a)
        if verdict is None:
            assert a.send is not None
            return chosen + f"rendered, {_payload_size(a.c, _message(a)[1], a.send.rendered, a.send_id):,} bytes"
        if verdict is _MISSING_PROPERTY:
            return chosen + "a personalisation has no value and no `default`"
        if verdict is _SAFARI_REQUIRES_URL:
            return chosen + "only Safari subscriptions, and the message has no url"
        renderer, message = _message(a)
        return chosen + f"{_payload_size(a.c, message, renderer.render(a.env), a.send_id):,} bytes > {MAX_PLAINTEXT:,}"


def _may_exceed(rendered: Rendered, limit: int) -> bool:
    """False when the payload cannot reach ``limit`` bytes whatever its encoding: a JSON string takes at
    most 6 bytes a character (``\\u0000``), and the rest of the payload well under 512. (Here, not a
    method of the Struct: the compiled build compiles this module, never outcomes.py.)"""
    chars = len(rendered.title) + len(rendered.body)
    for text in (rendered.url, rendered.image, rendered.icon):
        if text:
            chars += len(text)
    for label, url in rendered.buttons:
        chars += len(label) + len(url)
    return 6 * chars + 512 >= limit


def _platforms(subs: list[Subscription]) -> tuple[str, ...]:
    """The platforms of these subscriptions, each once, sorted: what a `send` record lists."""
    if len(subs) == 1:
        return (subs[0].platform,)
    return tuple(sorted({s.platform for s in subs}))


def _message(a: Attempt) -> tuple[MessageRenderer, plan.Message]:
    """The message this decision renders: the campaign's one message, or its variant's (SPEC §12.3),
    chosen here unless given (a test's winner) and then the same for the decision made again; in the
    user's language (SPEC §12.5)."""
    renderer = _variant_renderer(a)
    a.chosen = True
    a.lang = language_of(renderer.message, a.state.profile, a.language)
    if a.lang is not None:
        renderer = renderer.langs[a.lang]
    return renderer, renderer.message


def _variant_renderer(a: Attempt) -> MessageRenderer:
    c = a.c
    if not c.variants:
        return c.renderer
    if a.variant is None:
        a.variant = variant_of(c, a.state.user)
    return c.variants[a.variant][0]


def control_lang(a: Attempt) -> str | None:
    """The language a user held out (SPEC §8) would have got: what a `control` record carries (§9.4).
    The variant it reads is the user's own bucket's (not marked chosen: the record carries no variant)."""
    c = a.c
    message = c.variants[a.variant or variant_of(c, a.state.user)][1] if c.variants else c.plan.message
    return language_of(message, a.state.profile, a.language)


def _language_words(a: Attempt) -> str:
    renderer = _variant_renderer(a)
    if not renderer.langs:
        return ""
    _message(a)
    return language_match(renderer.message, a.state.profile, a.language)[1] + \
        (" (given with --lang)" if a.language is not None else "") + "; "


def _variant_words(a: Attempt) -> str:
    c = a.c
    if not c.variants:
        return ""
    _message(a)  # (a decision made again keeps its variant and never renders: this is a first decision)
    b = bucket(f"{c.id}:variant:{a.state.user}")
    if a.given:
        return f"variant {a.variant}: the test's winner (outside the test group; the user's own bucket is {b}); "
    low = 0
    for upper, variant in c.variant_ranges:
        if variant == a.variant:
            return f"variant {a.variant}: bucket {b} is in [{low}, {upper}); "
        low = upper
    return f"variant {a.variant}; "


def _payload_size(c: CompiledCampaign, message: plan.Message, rendered: Rendered, send_id: str) -> int:
    return payload_size(web_push_payload(rendered, message, campaign=c.id, send_id=send_id))


class DoNotDisturb(Step):
    """6. ``dnd``: inside the user's local DND hours: discarded, or delayed to their end."""

    name = "dnd"
    again = True

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        return c.plan.dnd is not None

    def decide(self, a: Attempt) -> Decision | None:
        dnd = a.c.plan.dnd
        assert dnd is not None and a.send is not None
        until = dnd_until(dnd, a.at, a.zone)
        if until is None:
            return None
        if dnd.mode == "discard":
            return _DND
        return Delay("dnd", until, a.send)

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        dnd = a.c.plan.dnd
        assert dnd is not None
        when = wall(a.at, a.zone).strftime("%H:%M")
        hours = f"DND {dnd.start[:5]}–{dnd.end[:5]}"
        if verdict is None:
            return f"{when} in {a.zone} is outside {hours}"
        if isinstance(verdict, Delay):
            return f"{when} in {a.zone} is inside {hours}: delayed until {iso(verdict.until)}"
        return f"{when} in {a.zone} is inside {hours}: discarded"


class Cutoff(Step):
    """7. ``cutoff``: at or after the cut-off on the scheduled date (it matters after a DND delay)."""

    name = "cutoff"
    again = True

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        return c.plan.cutoff is not None

    def decide(self, a: Attempt) -> Decision | None:
        assert a.send is not None
        cutoff = cutoff_instant(a.c, a.send)
        return _CUTOFF if cutoff is not None and a.at >= cutoff else None

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        assert a.send is not None and a.c.plan.cutoff is not None
        if not a.send.date:
            return "no scheduled date: the cut-off does not apply"
        where = f"the cut-off {a.c.plan.cutoff[:5]} on {a.send.date} in {a.send.zone or a.c.tz}"
        return f"{iso(a.at)} is {'at or after' if verdict else 'before'} {where}"


class CampaignLimit(Step):
    """8. ``campaign_limit``: this campaign's `limit N per …` lines, in the user's local calendar."""

    name = "campaign_limit"
    again = True

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        return bool(c.plan.limits)

    def decide(self, a: Attempt) -> Decision | None:
        for limit in a.c.plan.limits:
            if _sent(a, limit) >= limit.count:
                return _CAMPAIGN_LIMIT
        return None

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        words = []
        for limit in a.c.plan.limits:
            sent = _sent(a, limit)
            if limit.period == "rolling":
                words.append(f"{sent} of {limit.count} in the last {duration_words(limit.window)}")
            else:
                words.append(f"{sent} of {limit.count} per {limit.period}")
            if sent >= limit.count:
                return f"{words[-1]} already sent"
        return "; ".join(words)


def _sent(a: Attempt, limit: plan.Limit) -> int:
    """This campaign's sends to the user in the limit's period: a local calendar one, or the rolling
    window (t − D, t]."""
    prefix = a.c.counter_prefix
    if limit.period == "rolling":
        return sent_since(a.state.counters, prefix + ROLLING, a.at - limit.window * US)
    return a.state.counters.get(prefix + a.periods[limit.period], 0)


def duration_words(seconds: int) -> str:
    """``90`` → ``1m 30s``; ``86400`` → ``1d``."""
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts) or "0s"


class GlobalLimit(Step):
    """9. ``global_limit``: the user's sends of every campaign on their local day and in their local ISO
    week (SPEC §10); a campaign with `ignore global limits` is exempt."""

    name = "global_limit"
    again = True

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        return (settings.global_per_user_per_day is not None or settings.global_per_user_per_week is not None) \
            and not c.plan.ignore_global_limits

    def decide(self, a: Attempt) -> Decision | None:
        counters, settings = a.state.counters, a.settings
        for period, cap in (("day", settings.global_per_user_per_day), ("week", settings.global_per_user_per_week)):
            if cap is not None and counters.get(global_key(a.periods[period]), 0) >= cap:
                return _GLOBAL_LIMIT
        return None

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        words = []
        settings = a.settings
        for period, cap in (("day", settings.global_per_user_per_day), ("week", settings.global_per_user_per_week)):
            if cap is None:
                continue
            sent = a.state.counters.get(global_key(a.periods[period]), 0)
            words.append(f"{sent} of {cap} pushes in the user's {period} {a.periods[period]}")
            if sent >= cap:
                return f"{words[-1]} already sent"
        return "; ".join(words)


class MinGap(Step):
    """10. ``min_gap``: the user's previous send of any campaign is later than t − gap (SPEC §10)."""

    name = "min_gap"
    again = True

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        return settings.min_gap is not None and not c.plan.ignore_global_limits

    def decide(self, a: Attempt) -> Decision | None:
        gap = a.settings.min_gap
        assert gap is not None
        last = a.state.counters.get(LAST_SEND)
        return _MIN_GAP if last is not None and last > a.at - gap * US else None

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        gap = a.settings.min_gap
        assert gap is not None
        last = a.state.counters.get(LAST_SEND)
        if last is None:
            return f"no earlier push remembered within the minimum gap of {duration_words(gap)}"
        since = duration_words((a.at - last) // US)
        if verdict is None:
            return f"the previous push, at {iso(last)}, was {since} ago: at least the gap of {duration_words(gap)}"
        return f"the previous push, at {iso(last)}, was only {since} ago: less than the gap of {duration_words(gap)}"


class Throttle(Step):
    """11. the `delay` outcome with reason ``throttle``: this campaign's UTC minute (hour) already holds
    N sends or reserved slots; delayed to the first later period with room, whose slot is reserved
    (SPEC §12.1). A decision made again in the period it reserved uses that slot."""

    name = "throttle"
    again = True

    def uses(self, c: CompiledCampaign, settings: plan.Settings) -> bool:
        return c.plan.throttle is not None

    def decide(self, a: Attempt) -> Decision | None:
        throttle, slots, send = a.c.plan.throttle, a.slots, a.send
        assert throttle is not None and send is not None
        period = throttle_period(throttle, a.at)
        if slots is None or send.slot == period:
            return None
        room = slots.throttle_room(a.c.id, period, throttle.period * US, throttle.count)
        if room == period:
            return None
        return Delay("throttle", room, msgspec.structs.replace(send, slot=room))

    def taken(self, a: Attempt) -> Send | Delay:
        """The step asked again when the slot it found was taken meanwhile (by another worker)."""
        assert a.send is not None
        verdict = self.decide(a)
        assert verdict is None or isinstance(verdict, Delay)
        return Send(a.send) if verdict is None else verdict

    def explain(self, a: Attempt, verdict: Decision | None) -> str:
        throttle, slots, send = a.c.plan.throttle, a.slots, a.send
        assert throttle is not None and send is not None
        unit = "minute" if throttle.period == 60 else "hour"
        period = throttle_period(throttle, a.at)
        label = _period_label(period, throttle)
        if slots is None:
            return f"throttle {throttle.count} per {unit}: not checked here"
        if send.slot == period:
            return f"uses the slot it reserved in {label}"
        held = slots.throttle_count(a.c.id, period)
        if verdict is None:
            return f"{label} holds {held} of {throttle.count} sends of this campaign: room"
        assert isinstance(verdict, Delay)
        full = (verdict.until - period) // (throttle.period * US) - 1
        between = (f"; the next {unit} is full too" if full == 1 else
                   f"; the next {full} {unit}s are full too" if full else "")
        return (f"throttled: {label} already holds {held} sends of this campaign (throttle {throttle.count} per "
                f"{unit}){between}; delayed to {_period_label(verdict.until, throttle)}, a slot reserved there")


def _period_label(period: int, throttle: plan.Throttle) -> str:
    """A throttle period as people read it: ``10:01 UTC`` (a minute) or ``10:00 UTC`` (an hour)."""
    when = wall(period, "UTC")
    return when.strftime("%H:%M") + " UTC" if throttle.period == 60 else when.strftime("%H:00") + " UTC"


THROTTLE = Throttle()
STEPS: tuple[Step, ...] = (CampaignEnded(), Audience(), Reachable(), ControlGroup(), Render(), DoNotDisturb(),
                           Cutoff(), CampaignLimit(), GlobalLimit(), MinGap(), THROTTLE)
"""SPEC §9.3 in order; a decision that passes them all is a `send` (step 12)."""


STEP_NAMES = tuple(step.name for step in STEPS)

_CAMPAIGN_ENDED = Suppress("campaign_ended")
_NOT_IN_AUDIENCE = Suppress("not_in_audience")
_SKIP = Skip()
_UNREACHABLE = Suppress("unreachable")
_CONTROL = Control(None)
_GLOBAL_HOLDOUT = Control("global_holdout")
_MISSING_PROPERTY = Suppress("missing_property")
_SAFARI_REQUIRES_URL = Suppress("safari_requires_url")
_PAYLOAD_TOO_LARGE = Suppress("payload_too_large")
_DND = Suppress("dnd")
_CUTOFF = Suppress("cutoff")
_CAMPAIGN_LIMIT = Suppress("campaign_limit")
_GLOBAL_LIMIT = Suppress("global_limit")
_MIN_GAP = Suppress("min_gap")


class Pipeline:
    """A campaign's steps: ``first`` for a new decision, ``again`` for a delayed one made again."""

    __slots__ = ("again", "first")

    def __init__(self, c: CompiledCampaign, settings: plan.Settings) -> None:
        self.first = tuple(step for step in STEPS if step.uses(c, settings))
        self.again = tuple(step for step in self.first if step.again)

    def decide(self, a: Attempt, *, again: bool = False) -> Decision:
        for step in self.again if again else self.first:
            verdict = step.decide(a)
            if verdict is not None:
                return verdict
        assert a.send is not None
        return Send(a.send)


# ---- the tracer --------------------------------------------------------------------------------------


@dataclass
class Verdict:
    step: str
    decision: Decision | None  # None: the step let the decision through
    detail: str


@dataclass
class Trace:
    """A decision step by step: each step's verdict in words, and the outcome."""

    campaign: str
    user: str
    at: int
    again: bool  # a delayed decision made again
    verdicts: list[Verdict] = field(default_factory=list)
    decision: Decision | None = None  # None: every step that ran let it through (a partial run)
    send_id: str | None = None  # the decision's send_id (a delayed one keeps it)

    @property
    def outcome(self) -> str | None:
        return None if self.decision is None else self.decision.outcome

    @property
    def reason(self) -> str | None:
        return None if self.decision is None else self.decision.reason

    @property
    def send(self) -> PendingSend | None:
        d = self.decision
        return d.send if isinstance(d, (Send, Delay)) else None


def trace(pipeline: Pipeline, a: Attempt, *, again: bool = False, only: Sequence[str] | None = None) -> Trace:
    """Run the steps as the engine does, recording every verdict; ``only``: just the steps so named
    (``reach`` runs the audience, reachable and control steps, ``send-test`` reachable and render)."""
    steps = pipeline.again if again else pipeline.first
    result = Trace(a.c.id, a.state.user, a.at, again, send_id=a.send_id)
    for step in steps:
        if only is not None and step.name not in only:
            continue
        verdict = step.decide(a)
        result.verdicts.append(Verdict(step.name, verdict, step.explain(a, verdict)))
        if verdict is not None:
            result.decision = verdict
            return result
    if a.send is not None and (only is None or "render" in only):
        result.decision = Send(a.send)
    return result
