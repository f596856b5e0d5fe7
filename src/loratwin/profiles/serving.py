"""The profile under a deployment's own serving conditions, where they differ from the reference
measurements the tail constants were fitted on (TailModel, twin.delivery).

The reference client polled /metrics every 2 s after each scrape, and every run started a fresh
server, so each adapter's first request stalled the API server. A production server is scraped by
its monitoring (Prometheus: typically every 15 to 60 s) and, once up a while, has every adapter's
tokenizer cached. Simulating those conditions changes the latency tails, never the engine.
"""

from __future__ import annotations

import math

from loratwin.errors import InputError
from loratwin.profiles.model import MAX_METRICS_POLL_S, MIN_METRICS_POLL_S, Profile


def serving_conditions(profile: Profile, *, warm: bool = False, metrics_poll_s: float | None = None,
                       flag: str = "--metrics-poll") -> Profile:
    """`profile` with its first-use stall off when `warm` (every adapter served before the window)
    and its /metrics scrapes every `metrics_poll_s` seconds after the last ended (0: no scrapes;
    None: the profile's own, the reference client's 2 s)."""
    tails = profile.tails
    update: dict[str, float] = {}
    if warm:
        update["first_use_stall_ms"] = 0.0
    if metrics_poll_s is not None:
        check_metrics_poll(metrics_poll_s, flag)
        if metrics_poll_s == 0:
            update |= dict.fromkeys(tails.switches()["metrics_scrape"], 0.0)
        else:
            update["metrics_poll_interval_s"] = float(metrics_poll_s)
    if not update:
        return profile
    return profile.model_copy(update={"tails": tails.model_copy(update=update)})


def check_metrics_poll(metrics_poll_s: float, where: str) -> None:
    """Refuses a scrape interval outside TailModel.metrics_poll_interval_s's bounds, other than 0 (never
    scraped), naming `where` it came from (a flag, or a placement file's field)."""
    if not (math.isfinite(metrics_poll_s) and (metrics_poll_s == 0
                                               or MIN_METRICS_POLL_S <= metrics_poll_s <= MAX_METRICS_POLL_S)):
        raise InputError(f"{where} must be 0 (no scrapes) or a number of seconds from {MIN_METRICS_POLL_S:g} to "
                         f"{MAX_METRICS_POLL_S:g}, got {metrics_poll_s:g}")


def conditions(profile: Profile) -> dict[str, object]:
    """The serving conditions `profile` simulates, for a result to record: whether each adapter's
    first request stalls the API server (a fresh server; `warm` is False) and how often /metrics is
    scraped (`metrics_poll_s`, 0: never)."""
    tails = profile.tails
    return {"warm": not tails.first_use_stall_ms > 0,
            "metrics_poll_s": float(tails.metrics_poll_interval_s) if tails.scrape_on else 0.0}


def conditions_text(recorded: dict[str, object]) -> str:
    """`conditions(...)` in words, e.g. `fresh server (each adapter's first request stalls), /metrics
    scraped every 2 s`."""
    server = ("warm server (no first-use stalls)" if recorded["warm"]
              else "fresh server (each adapter's first request stalls it)")
    poll = float(recorded["metrics_poll_s"])  # type: ignore[arg-type]
    scrapes = f"/metrics scraped every {poll:g} s" if poll > 0 else "no /metrics scrapes"
    return f"{server}, {scrapes}"
