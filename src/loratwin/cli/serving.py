"""`--warm` and `--metrics-poll`: the deployment's serving conditions, for the commands that run the
twin (loratwin.profiles.serving)."""

import warnings
from typing import Annotated

import typer

WarmFlag = Annotated[bool | None, typer.Option(
    "--warm/--fresh",
    help="--warm: every adapter has served a request before the window, as on a server up for a while (its "
         "tokenizer cached): no first-use stalls of the API server (the /metrics gauge that slows scrapes still starts "
         "empty with the window). --fresh: a server just started, as in the "
         "reference runs (the default; simulate-cluster: what the placement file records).")]
MetricsPollFlag = Annotated[float | None, typer.Option(
    "--metrics-poll", metavar="SECONDS",
    help="Seconds between /metrics scrapes, which block the API server while they run (e.g. 15 for a "
         "Prometheus scrape interval; 0: no scrapes; else 0.001 to 3600). Default: the profile's, 2 s as the "
         "reference client polled.")]


def under_conditions(profile, warm: bool | None, metrics_poll: float | None):
    """The loaded profile under the flags' serving conditions, with a warning where the profile has
    no tail constants for what a flag asks (a calibrated profile without a `tails` section: the
    twin then simulates neither stalls nor scrapes, and the answers record that)."""
    from loratwin.profiles.serving import serving_conditions

    under = serving_conditions(profile, warm=warm, metrics_poll_s=metrics_poll)  # checks the flags
    tails = profile.tails
    if warm is False and not tails.first_use_stall_ms > 0:
        warnings.warn(f"profile {profile.name} has no first-use stall (tails.first_use_stall_ms is 0): --fresh "
                      "simulates a warm server", stacklevel=2)
    if metrics_poll and not tails.scrape_on:
        warnings.warn(f"profile {profile.name} has no scrape terms (tails.metrics_scrape_*): --metrics-poll "
                      f"{metrics_poll:g} simulates no /metrics scrapes", stacklevel=2)
    return under
