"""Two proportions compared (SPEC §12.4, §12.7), written once: the winner record's "significant" and
every difference `pushlang stats`, `/v1/stats` and the dashboard show.

The difference p1 − p2 with a 95% Wald interval (unpooled standard error) and a two-sided p-value
from the two-proportion z-test with the pooled proportion. Where a figure is undefined (no trials on
a side, or a pooled variance of zero) it is None — never NaN — and such a difference is not
significant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

Z_95 = 1.959963984540054  # the 97.5% quantile of the standard normal distribution
ALPHA = 0.05


@dataclass(frozen=True)
class Difference:
    diff: float | None  # p1 − p2
    low: float | None  # the 95% Wald interval of the difference
    high: float | None
    p_value: float | None  # two-sided, pooled z-test

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def compare(x1: int, n1: int, x2: int, n2: int) -> Difference:
    """``x1`` successes in ``n1`` trials against ``x2`` in ``n2``."""
    if n1 <= 0 or n2 <= 0:
        return Difference(None, None, None, None)
    p1, p2 = x1 / n1, x2 / n2
    diff = p1 - p2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    low, high = diff - Z_95 * se, diff + Z_95 * se
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    p_value = math.erfc(abs(diff) / math.sqrt(variance) / math.sqrt(2)) if variance > 0 else None
    return Difference(diff, low, high, p_value)


def best_two(tally: dict[str, list[int]]) -> tuple[str, str]:
    """The winner and the runner-up of a test (SPEC §12.4): ``tally`` maps each variant, in the order
    written, to [hits, sends]; the highest rate wins, compared exactly as fractions (no sends: 0), and a
    tie goes to the variant written first. With one variant, it is both."""
    order = list(tally)

    def rank(variant: str) -> tuple[Fraction, int]:
        hits, sends = tally[variant]
        return (Fraction(hits, sends) if sends else Fraction(0), -order.index(variant))

    ranked = sorted(order, key=rank, reverse=True)
    return ranked[0], ranked[1] if len(ranked) > 1 else ranked[0]
