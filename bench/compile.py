"""Compile throughput on a generated 10,000-line campaign file, beside Lark's bare LALR parse.

Both run in the same process on the same text, so the ratio holds on a noisy machine.
Target: the full compile (parse + AST + checks + plan) at ≥ 50% of the bare parse rate.

    python bench/compile.py [--lines 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lark import Lark

from pushlang.compiler import compile_paths
from pushlang.resources import grammar_file

CAMPAIGN = '''\
# Campaign {n}: an abandoned cart with a 10 minute window.
campaign cart_{n} "Abandoned cart {n}" {{
  labels "cart", "bench"
  platforms chrome, firefox, edge
  on "Added To Cart" where event.price > {price} and event.product_id != "sku-{n}"
  unless "Charged" where event.cart_id == trigger.cart_id within 10m
  who {{
    user.country in ["IN", "US", "DE"]
    did "Viewed Product" at least 2 times in last 7d
    not segment loyal_{m}
  }}
  when {{
    start 2026-12-01 00:00
    end 2027-01-01 00:00
    timezone "Europe/Berlin"
    dnd 21:00 to 09:00 delay
    limit 1 per day
  }}
  message {{
    title "Still thinking, @{{user.first_name | default: 'friend'}}?"
    body "Your @event.product_name is waiting"
    url "https://shop.example.com/cart?item=@{{event.product_id | urlencode}}"
    image "https://cdn.example.com/p/@{{event.product_id}}.jpg"
    ttl 2d
    button "Buy now" -> "https://shop.example.com/checkout"
  }}
  control group 10%
  conversion "Charged" within 2d revenue event.amount
}}

'''

SEGMENT = '''\
segment loyal_{m} {{
  did "Charged" where event.amount >= {price} at least 2 times in last 90d
  user.vip == true or exists user.tier
}}

'''


def generate(lines: int) -> str:
    parts: list[str] = []
    count = 0
    n = 0
    while count < lines:
        if n % 10 == 0:
            parts.append(SEGMENT.format(m=n // 10, price=50 + n % 7))
        parts.append(CAMPAIGN.format(n=n, m=n // 10, price=20 + n % 13))
        count = sum(p.count("\n") for p in parts)
        n += 1
    return "".join(parts)


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    text = generate(args.lines)
    lines = text.count("\n")
    bare = Lark(grammar_file().read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
                start=["start", "template_expr"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.push"
        path.write_text(text, encoding="utf-8")
        result = compile_paths([str(path)], config_path=None)  # warm-up: builds the parser once
        errors = [d for d in result.diagnostics if d.is_error]
        if errors or result.plan is None:
            print(f"the generated file does not compile: {errors[:3]}", file=sys.stderr)
            return 1
        # Lark alone: the same grammar and text, building its parse tree; pushlang's own work
        # (newline post-lexing, AST, templates, checks, plan) is what the ratio measures.
        bare_text = text
        bare.parse(bare_text, start="start")
        bare_label = "Lark bare LALR parse (same grammar, parse tree)"
        bare_best, bare_med = best_of(args.repeat, lambda: bare.parse(bare_text, start="start"))
        full_best, full_med = best_of(args.repeat, lambda: compile_paths([str(path)], config_path=None))

    campaigns = len(result.plan.campaigns)
    print(f"input: {lines:,} lines, {len(text):,} bytes, {campaigns} campaigns; best of {args.repeat} runs")
    print(f"{'':52} {'best s':>8} {'median s':>9} {'lines/s':>10}")
    print(f"{bare_label:52} {bare_best:8.3f} {bare_med:9.3f} {lines / bare_best:10,.0f}")
    print(f"{'pushlang compile (parse + AST + checks + plan)':52} {full_best:8.3f} {full_med:9.3f} "
          f"{lines / full_best:10,.0f}")
    ratio = bare_best / full_best
    print(f"compile rate / bare parse rate: {ratio:.0%} (target ≥ 50%) -> {'OK' if ratio >= 0.5 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
