"""The rate walk of the "unpredictable" arrival process, in one place for drawing and describing.

Every period after the first, each adapter's rate is multiplied or divided by RATE_FACTOR with equal
odds. As in the published process, the multiplier stays within [1 / RATE_BOUND, RATE_BOUND]: the
walk's position (the net number of steps up) is clamped to +-WALK_LIMIT, the least number of steps
that reaches the bound, and the multiplier at the last step is the bound itself. Unclamped, the
expected multiplier grows by (1.5 + 1/1.5) / 2 = 13/12 a period: a 40 req/s layout would expect
1.7e10 req/s after a day.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RATE_BOUND", "RATE_FACTOR", "WALK_LIMIT", "expected_multipliers", "walk_multipliers"]

RATE_FACTOR = 1.5
RATE_BOUND = 7.5
WALK_LIMIT = math.ceil(math.log(RATE_BOUND) / math.log(RATE_FACTOR))  # 5: 1.5^5 = 7.59 is cut to 7.5


def _multiplier(position: np.ndarray) -> np.ndarray:
    return np.clip(RATE_FACTOR ** position.astype(np.float64), 1.0 / RATE_BOUND, RATE_BOUND)


def walk_multipliers(steps: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Each period's rate multiplier, from its step (+1 up, -1 down) and the index in `steps` where
    each adapter's run of periods starts (its first step is ignored: the first period runs at the
    base rate). Streams are consecutive in `steps`, in the order of `first`."""
    lengths = np.diff(np.append(first, len(steps)))
    position = np.zeros(len(steps), dtype=np.int64)
    # A clamped walk is sequential within a stream; it runs across all streams at once, one
    # period index at a time (a day of 300 s periods is 288 rounds).
    for offset in range(1, int(lengths.max(initial=0))):
        at = first[lengths > offset] + offset
        position[at] = np.clip(position[at - 1] + steps[at], -WALK_LIMIT, WALK_LIMIT)
    return _multiplier(position)


def expected_multipliers(periods: int) -> np.ndarray:
    """The expected multiplier of the first periods (period 0: exactly 1), as many as it takes the
    walk to settle, at most `periods`: the last value holds for every later period too."""
    states = np.arange(-WALK_LIMIT, WALK_LIMIT + 1)
    values = _multiplier(states)
    probability = (states == 0).astype(np.float64)
    expected = []
    for _ in range(periods):
        expected.append(float(probability @ values))
        moved = 0.5 * (np.roll(probability, 1) + np.roll(probability, -1))
        # a step past either end stays there
        moved[0] = 0.5 * (probability[0] + probability[1])
        moved[-1] = 0.5 * (probability[-1] + probability[-2])
        if np.abs(moved - probability).max() < 1e-15:
            break  # settled: uniform over the states
        probability = moved
    return np.array(expected)
