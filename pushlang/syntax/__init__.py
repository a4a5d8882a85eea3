"""The syntax layer: the only part of pushlang that imports Lark."""

from pushlang.syntax.parser import parse

__all__ = ["parse"]
