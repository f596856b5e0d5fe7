"""Counts in words: "1 GPU", "2 GPUs", one helper for every message that prints a count."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`count` and the noun, singular for exactly 1 ("1 GPU", "3 GPUs", "0 runs"); `nouns` for an
    irregular plural. Counts print with thousands separators."""
    return f"{count:,} {noun if count == 1 else (nouns or noun + 's')}"
