"""The flags every command that judges a GPU shares (recommend, place, quickstart): the estimator
and the limits of the acceptance rule. Defaults are written out so that start-up does not import
the planner; tests/cli/test_startup.py checks that they agree with `loratwin.plan.judge.rule`."""

from pathlib import Path
from typing import Annotated

import typer

from loratwin.errors import InputError

DEFAULT_ADAPTER_DIR = "./adapters"  # loratwin.plan.placement.result.DEFAULT_ADAPTER_DIR
DEFAULT_MAX_WAIT_S = 60.0
DEFAULT_STARVATION_THRESHOLD = 0.1
DEFAULT_WINDOW_S = 3600.0

AdapterDirFlag = Annotated[str, typer.Option(
    help="Where the adapters lie, for the vllm serve commands (each adapter at DIR/its id; the default is a "
         "placeholder).")]
CheckFlag = Annotated[str, typer.Option(
    "--check", help="What predicts a GPU's behaviour for the acceptance rule: auto (the cost model), cost-model, "
                    "learned (the shipped models, waits from the cost model), twin (simulation, slow).")]
MaxWaitFlag = Annotated[float | None, typer.Option(
    help=f"Limit of the rule: the mean wait, in seconds, for a place in the batch, for KV admission or (twin) for "
         f"the first token ('inf': no wait limit, the published starvation rule alone, which allows waits of "
         f"minutes on GPUs with many quiet adapters). Default {DEFAULT_MAX_WAIT_S:g}, or none when --slo is given "
         "(typed beside --slo, both hold).")]
ModelsFlag = Annotated[Path | None, typer.Option(
    help="A directory written by `loratwin train`: the models for --check learned (and recommend's published-method "
         "answer) instead of the shipped ones.")]
SloFlag = Annotated[list[str] | None, typer.Option(
    "--slo", help="A latency SLO, KEY:MS, repeatable (keys ttft_mean, ttft_p99, itl_p99, tpot_p99), e.g. --slo "
                  "ttft_p99:2000 --slo itl_p99:100: each is one more limit of the rule and replaces the wait limit; "
                  "what the estimator does not predict (percentiles) the twin judges. TTFT SLOs count every request "
                  "sent, one still waiting at the window's end at its wait so far.")]
ThresholdFlag = Annotated[float, typer.Option(
    "--starvation-threshold", help="Limit of the rule: a GPU starves when 1 - throughput/offered >= this.")]




def check_models_dir(models: Path | None, flag: str = "--models", profile: str | None = None) -> None:
    """--models names a folder `loratwin train` wrote (its manifest.json and the default models it names,
    readable), trained on `profile` when given."""
    from loratwin.errors import InputError

    if models is None:
        return
    if not models.is_dir():
        what = "is not a folder" if models.exists() else "does not exist"
        raise InputError(f"{flag} {models}: {what} (expected a folder written by `loratwin train`)")
    if not (models / "manifest.json").is_file():
        raise InputError(f"{flag} {models}: no manifest.json there (expected a folder written by `loratwin train`)")
    from loratwin.learn.bundle import read_manifest

    trained_on = str(read_manifest(models)["profile"])
    if profile is not None and trained_on != profile:
        raise InputError(f"{flag} {models}: models trained on profile {trained_on}, not on --profile {profile}; "
                         f"train models on a sweep of {profile} (`loratwin train`) or drop --models")


def pick_window(window: float | None, alias_value: float | None, alias: str) -> tuple[float, str]:
    """The window given as --window or as its alias (recommend --duration, place --verify-duration),
    and the flag it was given as, so that a refusal names what the user typed."""
    if window is not None and alias_value is not None:
        raise InputError(f"--window and {alias} are the same setting: give one of them")
    if alias_value is not None:
        return alias_value, alias
    return (DEFAULT_WINDOW_S if window is None else window), "--window"


def build_rule(max_wait: float | None, threshold: float, window_s: float, window_flag: str = "--window",
               slo: list[str] | None = None):
    """The acceptance rule of these flags; the rule checks each limit and names its flag (before any
    output is written: place --out, --command-out). `max_wait` None: not typed (the default wait
    limit, or none beside SLOs)."""
    from loratwin.plan.judge import AcceptanceRule
    from loratwin.plan.judge.rule import check_window
    from loratwin.slo import parse_slos

    check_window(window_s, window_flag)
    slos = parse_slos(slo)
    wait = DEFAULT_MAX_WAIT_S if max_wait is None else max_wait
    return AcceptanceRule(starvation_threshold=threshold, max_wait_s=None if wait == float("inf") else wait,
                          window_s=window_s, slos=slos, max_wait_with_slos=max_wait is not None)
