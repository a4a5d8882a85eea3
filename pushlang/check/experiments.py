"""A/B tests: the variants `message ID P% ...` (SPEC §12.3) and the winner test (§12.4)."""

from __future__ import annotations

MIN_VARIANTS, MAX_VARIANTS = 2, 8
ALL = 10000  # basis points: the weights of a campaign's variants add up to exactly this


def basis_points(percent: float) -> int:
    """A variant's weight P% in basis points, `round(P × 100)` (SPEC §12.3)."""
    return round(percent * 100)
