"""Generate the bundled event log of the example shop: December for a few thousand users.

    python examples/generate_events.py [--users 3000] [--seed 7] [-o examples/events.jsonl.gz]

The log is deterministic for a seed. It has profiles (with countries, timezones and most with a
browser `language`), subscriptions on every platform (legacy Safari device tokens too), and the
events the example campaigns and segments react to: visits, sign-ups, product views, carts, charges
(some within the abandoned-cart window, some after it), shipments and trip bookings. After the busy
first week, a quieter tail of product views runs to the evening of 31 December, so that the replay
reaches the month's last day, Christmas Eve and every few days of the recurring campaigns; the
weekend sale's test pushes get clicks, so that its A/B test has a winner. Most users also open the
shop's app every few days until New Year's Eve, mostly at one or two hours of their own local day
(a commuter in the morning, someone else at lunch or in the evening), so that the best-time digest
sends each user at a different hour.

Each kind of data has its own random stream: adding one leaves the others' records as they were.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

START = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
DAYS = 7
COUNTRIES = [("DE", "Europe/Berlin", 30), ("IN", "Asia/Kolkata", 25), ("US", "America/New_York", 20),
             ("AT", "Europe/Vienna", 8), ("CH", "Europe/Zurich", 7), ("GB", "Europe/London", 10)]
NAMES = ["Asha", "Ben", "Chloé", "Dev", "Emma", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kavya", "Liam",
         "Mia", "Noah", "Olga", "Priya", "Quentin", "Rosa", "Sven", "Tara", None, None]
PRODUCTS = [("sku-lamp", "Desk Lamp", 39.0, "home"), ("sku-chair", "Office Chair", 189.0, "home"),
            ("sku-mug", "Coffee Mug", 12.5, "kitchen"), ("sku-kettle", "Kettle", 49.9, "kitchen"),
            ("sku-boots", "Winter Boots", 129.0, "fashion"), ("sku-scarf", "Wool Scarf", 24.0, "fashion"),
            ("sku-phone", "Phone Case", 19.0, "tech"), ("sku-buds", "Earbuds", 79.0, "tech"),
            ("sku-tent", "Tent", 249.0, "outdoor"), ("sku-bottle", "Water Bottle", 15.0, "outdoor")]
PLATFORMS = [("chrome", 55), ("firefox", 15), ("edge", 12), ("safari", 18)]
# The browser's language by country (None: the profile has no `language`), as the SDK reports it:
# mostly the country's own, some English, a few others (spelt `pt_BR` by some browsers).
LANGUAGES = {
    "DE": [("de-DE", 70), ("de", 6), ("en", 8), ("en-GB", 2), ("fr", 2), ("pt_BR", 2), ("es", 2), (None, 8)],
    "AT": [("de-AT", 62), ("de-DE", 10), ("en", 10), (None, 18)],
    "CH": [("de-CH", 45), ("fr-CH", 20), ("fr", 8), ("en", 10), (None, 17)],
    "US": [("en-US", 45), ("en", 16), ("es", 14), ("fr-CA", 5), ("pt_BR", 5), ("de-DE", 2), (None, 13)],
    "GB": [("en-GB", 66), ("en", 8), ("fr", 5), ("es", 4), ("pt_BR", 3), ("de-DE", 3), (None, 11)],
    "IN": [("en-IN", 40), ("en", 22), ("en-GB", 10), ("hi", 8), (None, 20)],
}
# When people open the app, in their local time: the hours of a habit and how often it is someone's.
HABITS = [((7, 8), 14), ((8,), 8), ((12, 13), 16), ((13,), 6), ((17, 18), 12), ((19,), 12), ((20, 21), 18),
          ((21, 22), 10), ((10, 15), 4)]


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pick(rng: random.Random, weighted: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    return rng.choices(weighted, weights=[w[-1] for w in weighted])[0]


def user_records(rng: random.Random, n: int, speaks: random.Random) -> list[tuple[dt.datetime, int, dict[str, Any]]]:
    """The first week of one user; `speaks` picks their language (its own stream: `rng` draws as it did before
    profiles had one)."""
    user = f"u{n:05d}"
    country, zone, _ = _pick(rng, COUNTRIES)
    language = _pick(speaks, LANGUAGES[country])[0]
    first = START + dt.timedelta(seconds=rng.randrange(DAYS * 86400))
    out: list[tuple[dt.datetime, int, dict[str, Any]]] = []
    seq = 0

    def add(t: dt.datetime, record: dict[str, Any]) -> None:
        nonlocal seq
        record = {"user": user, "ts": _iso(t), **record}
        out.append((t, seq, record))
        seq += 1

    props: dict[str, Any] = {"country": country, "timezone": zone}
    if language:
        props["language"] = language
    name = rng.choice(NAMES)
    if name:
        props["first_name"] = name
    if rng.random() < 0.1:
        props["vip"] = True
    if rng.random() < 0.01:
        props["test"] = True
    add(first, {"type": "profile", "props": props})
    add(first, {"name": "First Visit", "props": {"landing_page": "/", "referrer": rng.choice(["ads", "seo", "mail"])}})
    if rng.random() < 0.8:
        platform = _pick(rng, PLATFORMS)[0]
        if platform == "safari" and rng.random() < 0.5:
            add(first, {"type": "subscribe", "platform": "safari", "device_token": f"{n:064x}"})
        else:
            add(first, {"type": "subscribe", "platform": platform,
                        "endpoint": f"https://push.example.net/{platform}/{user}",
                        "keys": {"p256dh": f"BP{n:086d}", "auth": f"a{n:021d}"}})
    if rng.random() < 0.5:
        add(first + dt.timedelta(minutes=2), {"name": "Signed Up", "props": {"method": "email"}})
    t = first
    carts = 0
    for _ in range(rng.randint(1, 9)):
        t += dt.timedelta(minutes=rng.randint(1, 600))
        if t >= START + dt.timedelta(days=DAYS):
            break
        sku, product, price, category = rng.choice(PRODUCTS)
        add(t, {"name": "Viewed Product",
                "props": {"product_id": sku, "product_name": product, "price": price, "category": category}})
        if rng.random() < 0.3:
            carts += 1
            cart = f"c-{user}-{carts}"
            t += dt.timedelta(minutes=rng.randint(1, 5))
            add(t, {"name": "Added To Cart", "props": {"product_id": sku, "product_name": product, "price": price,
                                                       "cart_id": cart, "quantity": 1}})
            if rng.random() < 0.5:
                paid = t + dt.timedelta(minutes=rng.choice([3, 8, 15, 45, 240]))
                order = f"o-{user}-{carts}"
                add(paid, {"name": "Charged", "props": {"amount": price, "order_id": order, "cart_id": cart,
                                                        "currency": "EUR"}})
                if rng.random() < 0.8:
                    add(paid + dt.timedelta(hours=rng.randint(12, 30)),
                        {"name": "Order Shipped", "props": {"order_id": order, "carrier": "DHL"}})
    if rng.random() < 0.05:
        departure = first + dt.timedelta(days=rng.randint(2, 20), hours=rng.randint(0, 23))
        add(first + dt.timedelta(minutes=30),
            {"name": "Trip Booked", "props": {"booking_id": f"b-{user}", "departure": _iso(departure),
                                              "destination": rng.choice(["Lisbon", "Goa", "Oslo"])}})
    return out


TAIL_END = dt.datetime(2026, 12, 31, 22, 0, tzinfo=dt.UTC)
WEEKEND_SALE = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)  # ab_test_winner.push: 10:00 in Berlin


def clicks(rng: random.Random, n: int) -> list[tuple[dt.datetime, int, dict[str, Any]]]:
    """Clicks on the weekend sale's test pushes, as the service worker reports them: the send_id is the
    campaign's for the user and the occurrence (a click on a push the user never got is ignored), and
    free shipping is clicked more often than the discount."""
    user = f"u{n:05d}"
    at = int(WEEKEND_SALE.timestamp()) * 1_000_000
    send_id = hashlib.sha256(f"weekend_sale\x1f{user}\x1f{at}".encode()).hexdigest()[:24]
    shipping = int(hashlib.sha256(f"weekend_sale:variant:{user}".encode()).hexdigest()[:8], 16) % 10000 >= 5000
    if rng.random() >= (0.35 if shipping else 0.2):
        return []
    t = WEEKEND_SALE + dt.timedelta(seconds=rng.randrange(60, 7200))
    return [(t, 3000, {"user": user, "ts": _iso(t), "name": "Push Clicked",
                       "props": {"send_id": send_id, "campaign": "weekend_sale"}})]


def tail_records(rng: random.Random, n: int) -> list[tuple[dt.datetime, int, dict[str, Any]]]:
    """The quieter rest of December for one user: a few product views, or none."""
    if rng.random() >= 0.12:
        return []
    begin = START + dt.timedelta(days=DAYS)
    span = int((TAIL_END - begin).total_seconds())
    out = []
    for seq in range(rng.randint(1, 3)):
        t = begin + dt.timedelta(seconds=rng.randrange(span))
        sku, product, price, category = rng.choice(PRODUCTS)
        out.append((t, 1000 + seq, {"user": f"u{n:05d}", "ts": _iso(t), "name": "Viewed Product",
                                    "props": {"product_id": sku, "product_name": product, "price": price,
                                              "category": category}}))
    return out


def app_opens(rng: random.Random, n: int, first: dt.datetime, zone: str) -> list[tuple[dt.datetime, int, dict[str, Any]]]:
    """A user's "App Opened" events from the day after their first visit to New Year's Eve: on about one day
    in three, mostly at an hour of their habit (local time), sometimes at any hour of the waking day. A
    quarter of the users never open the app."""
    if rng.random() < 0.25:
        return []
    hours = _pick(rng, HABITS)[0]
    local = ZoneInfo(zone)
    out = []
    day = first.astimezone(local).date() + dt.timedelta(days=1)
    while True:
        if rng.random() < 0.32:
            hour = rng.choice(hours) if rng.random() < 0.8 else rng.randint(7, 23)
            t = dt.datetime.combine(day, dt.time(hour, rng.randrange(60), rng.randrange(60)), local).astimezone(dt.UTC)
            if t >= TAIL_END:
                break
            out.append((t, 4000 + len(out), {"user": f"u{n:05d}", "ts": _iso(t), "name": "App Opened"}))
        day += dt.timedelta(days=1)
        if dt.datetime.combine(day, dt.time(0), local) >= TAIL_END:
            break
    return out


def generate(users: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    speaks = random.Random(seed + 3)  # the newer streams are apart too, so the older ones stay as they were
    rows: list[tuple[dt.datetime, int, int, dict[str, Any]]] = []
    for n in range(users):
        rows.extend((t, n, seq, record) for t, seq, record in user_records(rng, n, speaks))
    tail = random.Random(seed + 1)  # apart, so the first week stays as it was for a seed
    for n in range(users):
        rows.extend((t, n, seq, record) for t, seq, record in tail_records(tail, n))
    clicking = random.Random(seed + 2)
    for n in range(users):
        rows.extend((t, n, seq, record) for t, seq, record in clicks(clicking, n))
    opening = random.Random(seed + 4)
    profiles = {r[1]: r[3] for r in rows if r[3].get("type") == "profile"}
    for n in range(users):
        first = dt.datetime.fromisoformat(profiles[n]["ts"])
        rows.extend((t, n, seq, record) for t, seq, record in app_opens(opening, n, first, profiles[n]["props"]["timezone"]))
    last = {"user": "u00000", "ts": _iso(TAIL_END), "name": "Viewed Product",
            "props": {"product_id": "sku-mug", "product_name": "Coffee Mug", "price": 12.5, "category": "kitchen"}}
    rows.append((TAIL_END, 0, 2000, last))  # the log ends on New Year's Eve
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return [r[3] for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("-o", "--output", default=str(Path(__file__).with_name("events.jsonl.gz")))
    args = ap.parse_args()
    records = generate(args.users, args.seed)
    data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records).encode()
    if args.output.endswith(".gz"):
        Path(args.output).write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    else:
        Path(args.output).write_bytes(data)
    print(f"{len(records):,} records for {args.users:,} users -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
