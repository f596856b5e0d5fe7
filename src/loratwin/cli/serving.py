"""`--warm` and `--metrics-poll`: the deployment's serving conditions, for the commands that run the
twin (loratwin.profiles.serving)."""

from typing import Annotated

import typer

WarmFlag = Annotated[bool | None, typer.Option(
    "--warm/--fresh",
    help="--warm: every adapter has served a request before the window, as on a server up for a while (its "
         "tokenizer cached): no first-use stalls of the API server. --fresh: a server just started, as in the "
         "reference runs (the default; simulate-cluster: what the placement file records).")]
MetricsPollFlag = Annotated[float | None, typer.Option(
    "--metrics-poll", metavar="SECONDS",
    help="Seconds between /metrics scrapes, which block the API server while they run (e.g. 15 for a "
         "Prometheus scrape interval; 0: no scrapes; else 0.001 to 3600). Default: the profile's, 2 s as the "
         "reference client polled.")]


def under_conditions(profile, warm: bool | None, metrics_poll: float | None):
    """The loaded profile under the flags' serving conditions."""
    from loratwin.profiles.serving import serving_conditions

    return serving_conditions(profile, warm=warm, metrics_poll_s=metrics_poll)

