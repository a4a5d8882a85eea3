"""The dispatcher: `send` decisions become deliveries on every subscription, and delivery records.

Web Push (Chrome, Firefox, Edge, Safari 16+ endpoints) goes through ``WebPushChannel``; legacy
Safari device tokens through ``ApnsChannel``. Each (send, subscription) pair ends in exactly one
``delivered`` or ``failed`` record; a subscription the push service says is gone is deactivated.
Credentials come from pushlang.toml and never reach a log, a diagnostic or a record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from pushlang import aio
from pushlang.config import Config
from pushlang.dispatch.base import Delivery, Wire, Withheld
from pushlang.dispatch.webpush import VapidAuth, WebPushChannel, WebPushTarget, topic_for, webpush_session
from pushlang.runtime.engine import SendJob
from pushlang.runtime.instants import iso
from pushlang.runtime.outcomes import Output
from pushlang.runtime.render import web_push_payload
from pushlang.runtime.store import Store, Subscription

log = logging.getLogger("pushlang.dispatch")
WEBPUSH, APNS = "webpush", "apns"  # the channels, as operators name them (POST /v1/channels/NAME/resume)


def channel_of(sub: Subscription) -> str:
    return APNS if sub.device_token else WEBPUSH


@dataclass(frozen=True)
class DeliverySettings:
    """The delivery sections of pushlang.toml, paths resolved against the config's folder."""

    vapid_key_file: str | None = None
    vapid_subject: str | None = None
    apns_key_file: str | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    website_push_id: str | None = None
    concurrency: int = 64
    timeout: float = 10.0
    max_attempts: int = 5
    allow_loopback: bool = False  # [server] allow_loopback_http: a local test push service

    @classmethod
    def from_config(cls, config: Config) -> DeliverySettings:
        base = Path(config.path).parent if config.path else Path()
        raw = config.raw
        vapid, apns, dispatch = raw.get("vapid", {}), raw.get("apns", {}), raw.get("dispatch", {})

        def path(value: Any) -> str | None:
            return str(base / value) if isinstance(value, str) and value else None

        return cls(
            vapid_key_file=path(vapid.get("private_key_file")),
            vapid_subject=vapid.get("subject"),
            apns_key_file=path(apns.get("key_file")),
            apns_key_id=apns.get("key_id"),
            apns_team_id=apns.get("team_id"),
            website_push_id=apns.get("website_push_id"),
            concurrency=int(dispatch.get("concurrency", 64)),
            timeout=float(dispatch.get("timeout", 10.0)),
            max_attempts=int(dispatch.get("max_attempts", 5)),
            allow_loopback=raw.get("server", {}).get("allow_loopback_http") is True,
        )

    def problems(self) -> list[str]:
        """What is missing for live Web Push (APNs is optional: device tokens fail without it)."""
        found = []
        if not self.vapid_key_file:
            found.append("[vapid] private_key_file (create one with `pushlang keys generate`)")
        elif not Path(self.vapid_key_file).is_file():
            found.append(f"[vapid] private_key_file: no file {self.vapid_key_file}")
        if not self.vapid_subject:
            found.append('[vapid] subject (e.g. "mailto:push@shop.example.com")')
        return found

    def check_keys(self) -> None:
        """Read the key files now: ValueError, in words, when one is not a usable key."""
        if self.vapid_key_file and self.vapid_subject:
            try:
                VapidAuth.from_file(self.vapid_key_file, self.vapid_subject)
            except Exception as error:  # py_vapid raises several types for a file that is not a key
                raise ValueError(f"[vapid] private_key_file {self.vapid_key_file} is not a VAPID private key "
                                 f"({type(error).__name__}): create one with `pushlang keys generate`") from None
        if self.has_apns:
            from pushlang.dispatch.apns import ApnsCredentials

            assert self.apns_key_file and self.apns_key_id and self.apns_team_id and self.website_push_id
            try:
                ApnsCredentials(self.apns_key_file, self.apns_key_id, self.apns_team_id, self.website_push_id)
            except (OSError, ValueError, TypeError) as error:
                raise ValueError(f"[apns] key_file {self.apns_key_file}: {error}") from None

    @property
    def has_apns(self) -> bool:
        return all((self.apns_key_file, self.apns_key_id, self.apns_team_id, self.website_push_id))


class Dispatcher:
    """Delivers send jobs through the channels (async); one aiohttp session for all of Web Push."""

    def __init__(self, settings: DeliverySettings, default_ttl: int, *,
                 apns_factory: Callable[[], Any] | None = None,
                 on_halt: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.default_ttl = default_ttl
        self._apns_factory = apns_factory
        self._on_halt = on_halt
        self._session: aiohttp.ClientSession | None = None
        self._webpush: WebPushChannel | None = None
        self._apns: Any = None

    async def __aenter__(self) -> Dispatcher:
        s = self.settings
        if s.vapid_key_file and s.vapid_subject:
            self._session = webpush_session(s.concurrency)
            auth = VapidAuth.from_file(s.vapid_key_file, s.vapid_subject)
            self._webpush = WebPushChannel(auth, self._session, concurrency=s.concurrency, timeout=s.timeout,
                                           max_attempts=s.max_attempts, on_halt=self._on_halt,
                                           allow_loopback=s.allow_loopback)
        if self._apns_factory is not None:
            self._apns = self._apns_factory()
        elif s.has_apns:
            from pushlang.dispatch.apns import ApnsChannel, ApnsCredentials

            assert s.apns_key_file and s.apns_key_id and s.apns_team_id and s.website_push_id
            credentials = ApnsCredentials(s.apns_key_file, s.apns_key_id, s.apns_team_id, s.website_push_id)
            self._apns = ApnsChannel(credentials, concurrency=s.concurrency, max_attempts=s.max_attempts,
                                     on_halt=self._on_halt)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._apns is not None:
            await self._apns.close()
        if self._session is not None:
            await self._session.close()

    async def deliver(self, jobs: Sequence[SendJob]) -> list[tuple[SendJob, Subscription, Delivery]]:
        """Every (send, subscription) pair, concurrently across subscriptions and in order for one
        subscription, so that once a push service says it is gone it is never used again."""
        pairs = [(job, sub) for job in jobs for sub in job.targets]
        chains: dict[str, list[int]] = {}
        for i, (_, sub) in enumerate(pairs):
            chains.setdefault(sub.key, []).append(i)
        results: list[Delivery | None] = [None] * len(pairs)

        async def chain(indices: list[int]) -> None:
            for i in indices:
                job, sub = pairs[i]
                result = results[i] = await self.deliver_one(job, sub)
                if result.deactivate:
                    return  # the later sends to this subscription are not attempted

        await asyncio.gather(*(chain(ix) for ix in chains.values()))
        return [(job, sub, r) for (job, sub), r in zip(pairs, results, strict=True) if r is not None]

    @property
    def halted(self) -> dict[str, str]:
        """The halted channels (``webpush``, ``apns``) and why."""
        found = {}
        if self._webpush is not None and self._webpush.halted is not None:
            found[WEBPUSH] = self._webpush.halted
        if self._apns is not None and getattr(self._apns, "halted", None) is not None:
            found[APNS] = self._apns.halted
        return found

    async def deliver_one(self, job: SendJob, sub: Subscription, *,
                          wire: Wire | None = None) -> Delivery:
        """One (send, subscription) pair; an unexpected error fails this pair alone, logged.
        ``wire`` is told when its requests are out."""
        try:
            return await self._one(job, sub, wire)
        except (asyncio.CancelledError, Withheld):
            raise
        except Exception:
            log.exception("delivery of %s to a %s subscription failed unexpectedly", job.send_id, sub.platform)
            return Delivery(False, None, "delivery_error", 0)

    async def _one(self, job: SendJob, sub: Subscription, wire: Wire | None = None) -> Delivery:
        message = job.message
        ttl = message.ttl if message.ttl is not None else self.default_ttl
        if sub.device_token:  # legacy Safari: APNs
            if self._apns is None:
                return Delivery(False, None, "apns_not_configured", 0)
            from pushlang.dispatch.apns import safari_payload

            url = job.send.url
            assert url is not None  # Safari subscriptions are only targeted when the message has a url
            payload = safari_payload(job.send.title, job.send.body, url)
            result: Delivery = await self._apns.deliver(sub.device_token, payload, ttl=ttl, wire=wire,
                                                      collapse_id=job.send_id)
            return result
        if self._webpush is None:
            return Delivery(False, None, "vapid_not_configured", 0)
        assert sub.endpoint and sub.keys
        body = web_push_payload(job.send.rendered, message, campaign=job.campaign.id, send_id=job.send_id,
                                safari=sub.platform == "safari")
        target = WebPushTarget(sub.endpoint, sub.keys["p256dh"], sub.keys["auth"])
        return await self._webpush.deliver(target, msgspec.json.encode(body), ttl=ttl, urgency=message.urgency,
                                           topic=message.tag or topic_for(job.send_id), wire=wire)


def delivery_record(job: SendJob, sub: Subscription, result: Delivery) -> Output:
    return Output(iso(job.at), job.campaign.id, job.user, "delivered" if result.delivered else "failed",
                  result.reason, job.send_id, platforms=[sub.platform], status=result.status,
                  attempts=result.attempts)


class LiveDispatch:
    """The bridge from the synchronous engine: collects send jobs, delivers them batch by batch on
    one event loop, deactivates gone subscriptions and emits the delivery records."""

    def __init__(self, dispatcher: Dispatcher, store: Store) -> None:
        self.dispatcher = dispatcher
        self.store = store
        self.jobs: list[SendJob] = []
        self.halted: list[str] = []
        self._loop = aio.new_event_loop()
        self._loop.run_until_complete(dispatcher.__aenter__())

    def __call__(self, job: SendJob) -> None:
        self.jobs.append(job)

    def flush(self) -> list[Output]:
        """Deliver what the engine sent since the last flush; the delivery records, in send order."""
        if not self.jobs:
            return []
        jobs, self.jobs = [self._still_active(job) for job in self.jobs], []
        records = []
        for job, sub, result in self._loop.run_until_complete(self.dispatcher.deliver(jobs)):
            if result.deactivate:
                state = self.store.get(job.user)
                if state is not None:
                    self.store.set_active(state, sub.key, False)
            records.append(delivery_record(job, sub, result))
        return records

    def _still_active(self, job: SendJob) -> SendJob:
        state = self.store.get(job.user)
        if state is None:
            return job
        targets = tuple(s for s in job.targets if (current := state.subscriptions.get(s.key)) and current.active)
        return replace(job, targets=targets)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._loop.run_until_complete(self.dispatcher.__aexit__(None, None, None))
            self._loop.close()
