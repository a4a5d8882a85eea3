"""What the runtime makes and passes on, as msgspec Structs: a rendered message, a send waiting for its
moment or its delivery, a step's decision (SPEC §9.3) and an output record (SPEC §9.4).

They live in a module of their own, never compiled: the compiled build (``HATCH_BUILD_HOOK_ENABLE_MYPYC``,
see DEVELOPERS.md) compiles the engine, the pipeline and the stores with mypyc, and a msgspec Struct
must be a class the interpreter made.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from pushlang.runtime.store import Subscription


class Rendered(msgspec.Struct, frozen=True, gc=False):
    title: str
    body: str
    url: str | None
    image: str | None
    icon: str | None
    buttons: tuple[tuple[str, str], ...]


class PendingSend(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered send that passed steps 1–5: what waits in a delay timer, and (as :class:`QueuedSend`)
    in an outbox. The variant and language chosen at the first decision travel with it (SPEC §9.3)."""

    send_id: str
    title: str
    body: str
    url: str | None = None
    image: str | None = None
    icon: str | None = None
    buttons: tuple[tuple[str, str], ...] = ()
    platforms: tuple[str, ...] = ()  # the platforms it goes to, as the `send` record lists them
    date: str | None = None  # a scheduled occurrence's local date, for the cut-off
    zone: str | None = None  # the zone that date and the cut-off are read in
    slot: int | None = None  # the throttle period (its start, µs) reserved for this send (SPEC §12.1)
    variant: str | None = None  # the variant chosen at the first decision (SPEC §12.3)
    lang: str | None = None  # the `lang` tag whose texts it holds, as written; None: the message's own (§12.5)

    @property
    def rendered(self) -> Rendered:
        return Rendered(self.title, self.body, self.url, self.image, self.icon, self.buttons)


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription a queued send goes to, in full: a scale-out dispatcher has no user state."""

    key: str
    platform: str = ""
    since: int = 0
    endpoint: str | None = None
    keys: dict[str, str] | None = None
    device_token: str | None = None

    @classmethod
    def of(cls, sub: Subscription) -> Target:
        return cls(key=sub.key, platform=sub.platform, since=sub.since, endpoint=sub.endpoint, keys=sub.keys,
                   device_token=sub.device_token)

    def subscription(self) -> Subscription:
        return Subscription(self.key, self.platform, self.since, self.endpoint, self.keys, self.device_token)


class QueuedSend(PendingSend, frozen=True, kw_only=True):
    """A `send` decision waiting for delivery: the service's outbox and scale-out's ``ob:{p}`` hold this."""

    at: int
    campaign: str
    user: str
    targets: tuple[Target, ...] = ()

    def pending(self) -> PendingSend:
        return PendingSend(**{name: getattr(self, name) for name in PendingSend.__struct_fields__})


class Send(msgspec.Struct, frozen=True, tag=True):
    outcome: ClassVar[str] = "send"
    send: PendingSend

    @property
    def reason(self) -> str | None:
        return None


class Control(msgspec.Struct, frozen=True, tag=True):
    """Held out (SPEC §8): no push; conversions are still tracked."""

    outcome: ClassVar[str] = "control"
    reason: str | None = None


class Delay(msgspec.Struct, frozen=True, tag=True):
    """Decided again at ``until`` with the steps that run again (SPEC §9.3)."""

    outcome: ClassVar[str] = "delay"
    reason: str
    until: int
    send: PendingSend


class Suppress(msgspec.Struct, frozen=True, tag=True):
    outcome: ClassVar[str] = "suppress"
    reason: str


class Skip(msgspec.Struct, frozen=True, tag=True):
    """A scheduled campaign's user outside the audience: no record at all (SPEC §3)."""

    outcome: ClassVar[str] = "skip"

    @property
    def reason(self) -> str | None:
        return None


class Output(msgspec.Struct, frozen=True):
    """One output record (SPEC §9.4). Fields without a value are null."""

    at: str
    campaign: str
    user: str | None  # null: a winner record (it is about the campaign)
    outcome: str  # send | control | delay | suppress | convert | winner | viewed | clicked | delivered | failed
    reason: str | None = None
    send_id: str | None = None
    title: str | None = None
    body: str | None = None
    url: str | None = None
    platforms: list[str] | None = None
    until: str | None = None
    revenue: float | None = None
    status: int | None = None  # delivered / failed: the push service's answer
    attempts: int | None = None  # delivered / failed: how many requests it took
    variant: str | None = None  # a campaign with variants: the one chosen (SPEC §9.4); a winner: the winner
    lang: str | None = None  # a decision: the `lang` tag whose texts were used; null: the message's own (§12.5)
    rates: dict[str, float] | None = None  # a winner record: each variant's rate, to 4 decimals
    significant: bool | None = None  # a winner record: the winner differs from the runner-up, p < 0.05
