"""Arrival processes: every adapter's arrival times over [0, duration), drawn in bulk with numpy.

Each process is drawn for all adapters that follow it at once:

- Poisson without a schedule: a Poisson count per adapter, then uniform times over the window
  (given its count, a Poisson process's times are independent uniforms).
- Poisson with a schedule: the same per piece of the schedule, at the piece's rate; exact, since
  counts in disjoint intervals of a Poisson process are independent.
- Gamma (with or without a schedule): a renewal process with Gamma gaps, run in operational time
  (the integral of the rate) and mapped back to seconds piece by piece: time-rescaling, so within
  a piece the gaps are Gamma with mean 1 / (rate x scale) and the chosen CV.
- Unpredictable: per adapter and period, a random gap family and rate (a clamped walk, see
  unpredictable.py); periods are cut where a schedule changes scale; Poisson periods are drawn
  like Poisson pieces, log-normal periods as renewal processes in operational time.

Renewal processes start in equilibrium (the first gap is the forward recurrence time), so their
rate is exact from time 0 rather than only in the long run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from loratwin import budget
from loratwin.workload.spec import (
    GammaArrival,
    PoissonArrival,
    ScheduleSegment,
    UnpredictableArrival,
    WorkloadSpec,
)
from loratwin.workload.unpredictable import RATE_BOUND, walk_multipliers

__all__ = ["generate_arrivals", "schedule_pieces"]


def schedule_pieces(
    schedule: Sequence[ScheduleSegment] | None, duration_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, scales) of the schedule's non-empty pieces inside [0, duration_s)."""
    if not schedule:
        return np.array([0.0]), np.array([duration_s]), np.array([1.0])
    bounds = np.array([0.0] + [segment.until_s for segment in schedule[:-1]] + [math.inf])
    starts, ends = bounds[:-1], np.minimum(bounds[1:], duration_s)
    scales = np.array([segment.scale for segment in schedule], dtype=np.float64)
    keep = starts < ends
    return starts[keep], ends[keep], scales[keep]


def generate_arrivals(
    workload: WorkloadSpec, duration_s: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times (float64, ascending, in [0, duration_s)) and adapter positions (int32).

    The generator is consumed in a fixed order (Poisson adapters without a schedule, then those
    with one, then Gamma, then unpredictable), so a seed fixes the result. Simultaneous arrivals
    keep adapter order.
    """
    arrivals = workload.arrivals()
    rates = np.array([adapter.rate_req_s for adapter in workload.adapters], dtype=np.float64)

    def positions_of(kind: type, scheduled: bool | None = None) -> np.ndarray:
        return np.array(
            [
                position
                for position, arrival in enumerate(arrivals)
                if isinstance(arrival, kind)
                and (scheduled is None or (getattr(arrival, "schedule", None) is not None) == scheduled)
            ],
            dtype=np.int64,
        )

    times: list[np.ndarray] = []
    adapters: list[np.ndarray] = []

    # Expected requests of the processes whose rates are fixed in advance; unpredictable adapters
    # count at their base rate until their rates are drawn.
    fixed_requests = math.fsum(
        rate * (duration_s if isinstance(arrival, UnpredictableArrival) else _schedule_mass(arrival, duration_s))
        for rate, arrival in zip(rates.tolist(), arrivals, strict=True)
    )
    _check_volume(fixed_requests, duration_s)

    plain = positions_of(PoissonArrival, scheduled=False)
    if plain.size:
        # The original Poisson draws, kept as they were: the reference runs' tables must not change.
        counts = rng.poisson(rates[plain] * duration_s)
        times.append(rng.uniform(0.0, duration_s, int(counts.sum())))
        adapters.append(np.repeat(plain, counts))

    scheduled = positions_of(PoissonArrival, scheduled=True)
    if scheduled.size:
        piece_adapter, starts, ends, piece_rates = _scheduled_pieces(arrivals, scheduled, rates, duration_s)
        piece_times, piece_of = _poisson_pieces(rng, starts, ends, piece_rates)
        times.append(piece_times)
        adapters.append(piece_adapter[piece_of])

    gamma = positions_of(GammaArrival)
    if gamma.size:
        gamma_times, gamma_adapters = _gamma_arrivals(rng, arrivals, gamma, rates, duration_s)
        times.append(gamma_times)
        adapters.append(gamma_adapters)

    unpredictable = positions_of(UnpredictableArrival)
    if unpredictable.size:
        fixed_requests -= float(rates[unpredictable].sum()) * duration_s
        wild_times, wild_adapters = _unpredictable_arrivals(
            rng, arrivals, unpredictable, rates, duration_s, fixed_requests
        )
        times.append(wild_times)
        adapters.append(wild_adapters)

    arrival_s = np.concatenate(times) if times else np.empty(0)
    adapter = (np.concatenate(adapters) if adapters else np.empty(0, dtype=np.int64)).astype(np.int32)
    # Draws may round up to the upper bound; the window is half-open.
    np.minimum(arrival_s, np.nextafter(duration_s, 0.0), out=arrival_s)
    if len(times) == 1 and plain.size:
        # Already in adapter blocks: a stable sort on time alone gives the same order, faster.
        order = np.argsort(arrival_s, kind="stable")
    else:
        order = np.lexsort((adapter, arrival_s))
    return arrival_s[order], adapter[order]


def _schedule_mass(arrival: object, duration_s: float) -> float:
    """Seconds of the run weighted by the schedule's scale (duration_s without a schedule)."""
    starts, ends, scales = schedule_pieces(getattr(arrival, "schedule", None), duration_s)
    return float((scales * (ends - starts)).sum())


def _check_volume(expected_requests: float, duration_s: float, hint: str = "") -> None:
    """Refuse, before drawing them, more requests than the budget allows (loratwin.budget)."""
    budget.require(budget.draw_estimate(expected_requests, duration_s, f" (lower the rates or duration_s{hint})"))


def _scheduled_pieces(
    arrivals: Sequence[Any],
    positions: np.ndarray,
    rates: np.ndarray,
    duration_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (adapter, schedule piece): adapter position, start, end and rate x scale."""
    piece_adapter, starts, ends, piece_rates = [], [], [], []
    for position in positions:
        start, end, scale = schedule_pieces(getattr(arrivals[position], "schedule", None), duration_s)
        piece_adapter.append(np.full(len(start), position, dtype=np.int64))
        starts.append(start)
        ends.append(end)
        piece_rates.append(rates[position] * scale)
    return (
        np.concatenate(piece_adapter),
        np.concatenate(starts),
        np.concatenate(ends),
        np.concatenate(piece_rates),
    )


def _poisson_pieces(
    rng: np.random.Generator, starts: np.ndarray, ends: np.ndarray, rates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson arrivals at a constant rate in each [start, end): times and the piece of each."""
    lengths = ends - starts
    counts = rng.poisson(rates * lengths)
    piece = np.repeat(np.arange(len(starts)), counts)
    return starts[piece] + rng.random(piece.size) * lengths[piece], piece


def _gamma_arrivals(
    rng: np.random.Generator,
    arrivals: Sequence[Any],
    positions: np.ndarray,
    rates: np.ndarray,
    duration_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    piece_adapter, starts, ends, piece_rates = _scheduled_pieces(arrivals, positions, rates, duration_s)
    # Operational time, in expected arrivals: a unit-mean renewal process on it, mapped back to
    # seconds, has gaps of mean 1 / (rate x scale) within each piece. Every stream's pieces are laid
    # end to end on one axis, so a single search maps all arrivals back.
    piece_mass = piece_rates * (ends - starts)
    piece_end = np.cumsum(piece_mass)
    piece_start = piece_end - piece_mass
    stream_of_piece = np.searchsorted(positions, piece_adapter)
    streams = np.arange(len(positions))
    first_piece = np.searchsorted(stream_of_piece, streams, side="left")
    last_piece = np.searchsorted(stream_of_piece, streams, side="right") - 1
    stream_start = piece_start[first_piece]
    horizons = piece_end[last_piece] - stream_start

    cvs = np.array([arrivals[position].cv for position in positions])
    stream, offset = _renewal(rng, horizons, "gamma", 1.0 / cvs**2)

    # Pieces of zero mass (rate or scale 0) hold no arrivals: search with side="right" skips them,
    # and the clip keeps rounding from carrying an arrival into one or into a neighbouring stream.
    index = np.arange(len(piece_mass))
    positive = piece_mass > 0
    first_positive = np.minimum.reduceat(np.where(positive, index, len(index)), first_piece)
    last_positive = np.maximum.reduceat(np.where(positive, index, -1), first_piece)
    axis = stream_start[stream] + offset
    piece = np.searchsorted(piece_end, axis, side="right")
    piece = np.clip(piece, first_positive[stream], last_positive[stream])
    within = np.clip(axis - piece_start[piece], 0.0, piece_mass[piece])
    return starts[piece] + within / piece_rates[piece], positions[stream]


def _unpredictable_arrivals(
    rng: np.random.Generator,
    arrivals: Sequence[Any],
    positions: np.ndarray,
    rates: np.ndarray,
    duration_s: float,
    other_requests: float,
) -> tuple[np.ndarray, np.ndarray]:
    period_s = np.array([arrivals[position].period_s for position in positions])
    sigma = np.array([arrivals[position].sigma for position in positions])
    periods = np.ceil(duration_s / period_s).astype(np.int64)
    first_period = np.concatenate(([0], np.cumsum(periods)[:-1]))
    stream = np.repeat(np.arange(len(positions)), periods)
    index = np.arange(stream.size) - first_period[stream]  # period number within its adapter
    starts = index * period_s[stream]
    ends = np.minimum(starts + period_s[stream], duration_s)

    lognormal = rng.random(stream.size) < 0.5
    steps = np.where(rng.random(stream.size) < 0.5, 1, -1)
    period_rates = rates[positions][stream] * walk_multipliers(steps, first_period)
    # A schedule scales the rate within a period: each period is cut where its schedule changes.
    period, piece_start, piece_end, scale = _period_pieces(arrivals, positions, stream, starts, ends, duration_s)
    piece_rate = period_rates[period] * scale
    piece_mass = piece_rate * (piece_end - piece_start)
    _check_volume(
        other_requests + float(piece_mass.sum()),
        duration_s,
        f"; unpredictable rates rise up to {RATE_BOUND:g} times their base rate",
    )

    poisson = np.flatnonzero(~lognormal[period])
    poisson_times, poisson_piece = _poisson_pieces(
        rng, piece_start[poisson], piece_end[poisson], piece_rate[poisson]
    )

    # A log-normal period is one renewal process over its expected arrivals (operational time),
    # mapped back to seconds piece by piece, as Gamma arrivals are.
    renewal = np.flatnonzero(lognormal)
    horizons = np.bincount(period, weights=piece_mass, minlength=stream.size)[renewal]
    which, offset = _renewal(rng, horizons, "lognormal", sigma[stream[renewal]])
    renewal_times = _from_operational_time(renewal[which], offset, period, piece_start, piece_rate, piece_mass)

    times = np.concatenate((poisson_times, renewal_times))
    streams = np.concatenate((stream[period[poisson[poisson_piece]]], stream[renewal[which]]))
    return times, positions[streams]


def _period_pieces(
    arrivals: Sequence[Any],
    positions: np.ndarray,
    stream: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    duration_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Periods cut where their adapter's schedule changes scale: per piece, its period, start,
    end and scale. Without a schedule a period is one piece (the same start and end, scale 1)."""
    cut_period, cut_time = [np.arange(stream.size)], [starts]
    schedules: dict[Any, list[int]] = {}
    for number, position in enumerate(positions):
        schedule = getattr(arrivals[position], "schedule", None)
        if schedule is not None:
            schedules.setdefault(schedule, []).append(number)
    scaled: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (periods, changes, scales)
    for schedule, numbers in schedules.items():
        pieces_start, _, pieces_scale = schedule_pieces(schedule, duration_s)
        changes = pieces_start[1:]
        in_group = np.flatnonzero(np.isin(stream, numbers))
        inside = (starts[in_group, None] < changes) & (changes < ends[in_group, None])
        where, which = np.nonzero(inside)
        cut_period.append(in_group[where])
        cut_time.append(changes[which])
        scaled.append((in_group, pieces_start, pieces_scale))
    period = np.concatenate(cut_period)
    piece_start = np.concatenate(cut_time)
    order = np.lexsort((piece_start, period))
    period, piece_start = period[order], piece_start[order]
    last_of_period = np.append(period[1:] != period[:-1], True)
    piece_end = np.where(last_of_period, ends[period], np.append(piece_start[1:], 0.0))
    scale = np.ones(len(period))
    for in_group, pieces_start, pieces_scale in scaled:
        mine = np.flatnonzero(np.isin(period, in_group))
        scale[mine] = pieces_scale[np.searchsorted(pieces_start, piece_start[mine], side="right") - 1]
    return period, piece_start, piece_end, scale


def _from_operational_time(
    period_of: np.ndarray,
    offset: np.ndarray,
    period: np.ndarray,
    piece_start: np.ndarray,
    piece_rate: np.ndarray,
    piece_mass: np.ndarray,
) -> np.ndarray:
    """Seconds of arrivals at `offset` expected arrivals into their period (`period_of`), through
    the period's pieces (consecutive, each with `period`, start, rate and mass)."""
    end = np.cumsum(piece_mass)
    before = end - piece_mass  # mass of all earlier pieces
    # a piece of no mass holds no arrival: the search (side="right") passes over them, and the clip
    # to the period's first and last pieces with mass keeps rounding from landing in one
    index = np.arange(len(period))
    group_start = np.flatnonzero(np.append(True, period[1:] != period[:-1]))
    first_positive = np.minimum.reduceat(np.where(piece_mass > 0, index, len(index)), group_start)
    last_positive = np.maximum.reduceat(np.where(piece_mass > 0, index, -1), group_start)
    group = np.searchsorted(group_start, np.searchsorted(period, period_of, side="left"))
    first = group_start[group]
    piece = np.searchsorted(end, before[first] + offset, side="right")
    piece = np.clip(piece, first_positive[group], last_positive[group])
    # exact for a period of one piece (no schedule): its own offset over its own rate
    within = np.clip(offset - (before[piece] - before[first]), 0.0, piece_mass[piece])
    return piece_start[piece] + within / piece_rate[piece]


def _renewal(
    rng: np.random.Generator, horizons: np.ndarray, family: str, parameter: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stationary renewal processes with unit-mean gaps, one per horizon, each on [0, horizon).

    `family` is "gamma" (parameter: shape, CV = 1 / sqrt(shape)) or "lognormal" (parameter:
    log-space sigma). Returns the stream of each arrival and its position, grouped by round.
    """
    parameter = np.broadcast_to(np.asarray(parameter, dtype=np.float64), horizons.shape)
    if family == "gamma":
        cv = 1.0 / np.sqrt(parameter)

        def gaps(chosen: np.ndarray) -> np.ndarray:
            return rng.standard_gamma(chosen) / chosen

        def first_gaps(chosen: np.ndarray) -> np.ndarray:
            # Forward recurrence time: a uniform share of a length-biased gap, Gamma(shape + 1).
            return rng.random(chosen.size) * rng.standard_gamma(chosen + 1.0) / chosen

    else:
        cv = np.sqrt(np.expm1(parameter**2))

        def gaps(chosen: np.ndarray) -> np.ndarray:
            return np.exp(chosen * rng.standard_normal(chosen.size) - chosen**2 / 2)

        def first_gaps(chosen: np.ndarray) -> np.ndarray:
            # The length-biased log-normal is log-normal with its log-mean moved up by sigma^2.
            return rng.random(chosen.size) * np.exp(chosen * rng.standard_normal(chosen.size) + chosen**2 / 2)

    current = first_gaps(parameter)
    streams = [np.flatnonzero(current < horizons)]
    offsets = [current[streams[0]]]
    active = streams[0]
    while active.size:
        remaining = horizons[active] - current[active]
        # Enough gaps that one round nearly always passes the horizon; the loop covers the rest.
        budget = np.minimum(remaining + 4.0 * cv[active] * np.sqrt(remaining), 2.0 * remaining) + 16.0
        counts = np.ceil(budget).astype(np.int64)
        stream = np.repeat(active, counts)
        total = np.cumsum(gaps(parameter[stream]))
        block_end = np.cumsum(counts)
        before = np.concatenate(([0.0], total[block_end[:-1] - 1]))
        position = current[stream] + (total - np.repeat(before, counts))
        keep = position < horizons[stream]
        streams.append(stream[keep])
        offsets.append(position[keep])
        current[active] = position[block_end - 1]
        active = active[current[active] < horizons[active]]
    return np.concatenate(streams), np.concatenate(offsets)
