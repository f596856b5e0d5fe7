"""The starvation threshold's range, the one rule every command and the acceptance rule hold it to: a
run (or a GPU) starves when 1 - throughput/offered >= the threshold, so it lies strictly between 0
(everything would starve) and 1 (nothing could). Light on purpose: the CLI checks flags with it at
start-up."""

from __future__ import annotations

import math

from loratwin.errors import InputError


def check_threshold(value: float, flag: str = "--starvation-threshold") -> float:
    """`value` if it lies strictly between 0 and 1, else an InputError naming `flag`."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value < 1):
        shown = f"{value:g}" if isinstance(value, (int, float)) else repr(value)
        raise InputError(f"{flag}: must be strictly between 0 and 1, got {shown} (a run starves when "
                         "1 - throughput/offered >= it)")
    return value
