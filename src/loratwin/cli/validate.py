"""`loratwin validate` and `loratwin calibrate`: the twin against real runs, and profiles fitted to measurements."""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import _out_console, _progress, app, err_console
from loratwin.cli.memory import MaxMemoryFlag, MaxTimeFlag, configure
from loratwin.errors import LoratwinError
from loratwin.files import Output, atomic_write, check_outputs
from loratwin.grammar import plural


@app.command()
def validate(
    runs_file: Annotated[Path, typer.Argument(help="Real runs in the reference format (runs.csv).")],
    source_set: Annotated[list[str] | None, typer.Option("--set", help="Only runs of this source set (repeatable).")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only runs of this model (repeatable).")] = None,
    profile: Annotated[str | None, typer.Option(help="Profile for every run. Default: the built-in profile named like each run's model.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per run (arrivals and the rate layout were not recorded).")] = 3,
    workers: Annotated[int, typer.Option(help="Processes (0: all cores).")] = 0,
    client_max_waiting: Annotated[int, typer.Option("--client-max-waiting", help="The reference client's queue cap.")] = 25_500,
    out: Annotated[Path | None, typer.Option(help="Write runs.csv, errors.md, errors.json and scatter.png here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the error table as JSON.")] = False,
    max_memory: MaxMemoryFlag = None,
    max_time: MaxTimeFlag = None,
) -> None:
    """Replay real vLLM runs through the twin and report its errors beside the published twin's."""

    configure("validate", max_memory, max_time)
    from loratwin.profiles import load_profile
    from loratwin.report.console import print_error_table
    from loratwin.validate import error_table, load_runs, replay_runs
    from loratwin.validate.replay import check_replay_options
    from loratwin.validate.report import VALIDATION_FILES, write_validation

    check_replay_options(range(seeds), workers or None, client_max_waiting)
    check_outputs(Output("--out", out, folder=True, own=VALIDATION_FILES),
                  Output("--report", report, folder=True, own=_report_files()), inputs=[runs_file])
    runs = [r for r in load_runs(runs_file)
            if (not source_set or r.source_set in source_set) and (not model or r.model in model)]
    runs = [r for r in runs if r.start_known]
    if not runs:
        which = "match the --set/--model filters" if source_set or model else "ran or failed to start (by their status)"
        raise LoratwinError(f"{runs_file}: no runs to replay: none {which}")
    from loratwin import budget

    budget.require(budget.validation_estimate(len(runs), seeds, workers or os.cpu_count() or 1, f" of {runs_file}"))
    profiles: dict[str, object] = {}

    def profile_for(name: str):
        if name not in profiles:
            profiles[name] = load_profile(profile or name)
        return profiles[name]

    for name in sorted({r.model for r in runs}):
        try:
            profile_for(name)  # fail early on a missing profile
        except LoratwinError as err:
            if profile is not None:
                raise
            raise LoratwinError(f"{runs_file}: runs of model {name!r}: {err}; --profile sets one for every run") from None
    what = f"replaying {plural(len(runs), 'run')} x {plural(seeds, 'seed')}"
    progress, advance = _progress(len(runs) * seeds, what)
    with progress:
        results = replay_runs(runs, profile_for, seeds=range(seeds), workers=workers or None,
                              client_max_waiting=client_max_waiting,
                              on_done=_lines_unless_terminal(advance, len(runs) * seeds, what))
    table = error_table(results)
    if out is not None:
        paths = write_validation(results, table, out)
        err_console.print(f"wrote {', '.join(p.name for p in paths)} to {out}")
    if report is not None:
        from loratwin.report import write_validation_report

        err_console.print(f"wrote report {write_validation_report(results, table, report)}")
    if json_out:
        import json

        sys.stdout.write(json.dumps(table, indent=2) + "\n")
    else:
        print_error_table(table, _out_console())


def _report_files() -> tuple[str, ...]:
    from loratwin.report.html import REPORT_FILES

    return REPORT_FILES


def _lines_unless_terminal(advance, total: int, what: str):
    """rich draws no bar when stderr is not a terminal (a log file, a pipe): there, print a line
    at the start and at every tenth of the work instead, so a long replay is never silent."""
    if err_console.is_terminal or total < 1:
        return advance
    err_console.print(f"{what}: 0/{total}", highlight=False)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if done * 10 // total > (done - 1) * 10 // total:
            err_console.print(f"{what}: {done}/{total}", highlight=False)

    return step


@app.command()
def calibrate(
    model: Annotated[str, typer.Option(help="Model name as written in the measurement files.")],
    calibration_dir: Annotated[Path, typer.Option("--calibration-dir", help="Directory with decode_latency.csv, scheduler_overhead.csv, adapter_loading.csv, kv_capacity.csv.")],
    out: Annotated[Path, typer.Option(help="Profile YAML to write.")],
    runs: Annotated[Path | None, typer.Option(help="Real runs (runs.csv) to fit the LoRA and prefill step terms on.")] = None,
    fit_set: Annotated[list[str] | None, typer.Option("--fit-set", help="Only runs of this source set are fitted on (repeatable).")] = None,
    name: Annotated[str | None, typer.Option(help="Profile name. Default: the model name.")] = None,
    model_id: Annotated[str | None, typer.Option("--model-id", help="Model identifier, e.g. a Hugging Face id.")] = None,
    gpu: Annotated[str, typer.Option(help="GPU description.")] = "unknown GPU",
    rounds: Annotated[int, typer.Option(help="Rounds of the twin-in-the-loop fit.")] = 5,
    workers: Annotated[int, typer.Option(help="Processes (0: all cores).")] = 0,
    lora_overhead_weight: Annotated[float, typer.Option(
        "--lora-overhead-weight",
        help="Also fit the LoRA step terms on the restricted-adapter runs of lora_overhead.csv in --calibration-dir, "
             "each weighing like this many real runs (0: not used).")] = 0.0,
    max_memory: MaxMemoryFlag = None,
    max_time: MaxTimeFlag = None,
) -> None:
    """Fit a profile (cost model) from measurements and write it as YAML."""
    import shlex

    import yaml

    from loratwin.validate import load_runs
    from loratwin.validate.calibrate import calibrate as fit_profile

    configure("calibrate", max_memory, max_time)
    if rounds < 1:
        raise LoratwinError(f"--rounds must be >= 1, got {rounds}")
    if workers < 0:
        raise LoratwinError(f"--workers must be >= 0 (0: all cores), got {workers}")
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise LoratwinError(f"--out {out}: expected a .yaml file name (a profile is YAML)")
    if not calibration_dir.is_dir():
        what = "is not a folder" if calibration_dir.exists() else "does not exist"
        raise LoratwinError(f"--calibration-dir {calibration_dir}: {what} (expected the folder of the measurement CSVs)")
    if fit_set and runs is None:
        raise LoratwinError("--fit-set selects runs of --runs: give --runs (a runs.csv) with it")
    if not (0 <= lora_overhead_weight < float("inf")):
        raise LoratwinError(f"--lora-overhead-weight must be a finite number >= 0, got {lora_overhead_weight}")
    if lora_overhead_weight > 0 and runs is None:
        raise LoratwinError("--lora-overhead-weight joins the runs' fit of the LoRA terms: give --runs (a runs.csv) "
                            "with it")
    check_outputs(Output("--out", out), inputs=[runs, calibration_dir])
    fit_runs = None
    if runs is not None:
        fit_runs = [r for r in load_runs(runs) if r.model == model and (not fit_set or r.source_set in fit_set)]
        if not fit_runs:
            raise LoratwinError(f"{runs}: no runs of model {model!r} in the --fit-set")
        from loratwin import budget

        budget.require(budget.validation_estimate(len(fit_runs), rounds + 1, workers or os.cpu_count() or 1,
                                                  f" of {runs}, --rounds {rounds} + 1"))

    progress, advance = _progress(len(fit_runs or ()) * (rounds + 1), f"fitting on {len(fit_runs or ())} runs")

    def on_round(i, fit_round):
        progress.console.print(
            f"round {i}: throughput err {fit_round.throughput_error:.2f}%, ITL err {fit_round.itl_error:.2f}%, "
            f"starvation agreement {100 * fit_round.starvation_agreement:.1f}%" + _lora_overhead_error(fit_round)
        )

    with progress:
        profile_obj, history = fit_profile(
            model, calibration_dir, fit_runs, name=name, gpu=gpu, model_id=model_id, rounds=rounds,
            workers=workers or None, on_round=on_round, on_replay_done=advance,
            lora_overhead_weight=lora_overhead_weight,
        )
    command = "loratwin " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = f"# Written by: {command}\n"
    if history:
        best = min(history, key=lambda r: r.score)
        header += (f"# Fit on {plural(len(fit_runs), 'run')}: throughput err {best.throughput_error:.2f}%, "
                   f"ITL err {best.itl_error:.2f}%, starvation agreement {100 * best.starvation_agreement:.1f}%"
                   f"{_lora_overhead_error(best)}\n")
    text = header + yaml.safe_dump(profile_obj.model_dump(mode="json"), sort_keys=False)
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    err_console.print(f"wrote {out}")


def _lora_overhead_error(fit_round) -> str:
    if fit_round.equations_error is None:
        return ""
    return f", LoRA-overhead runs ITL err {fit_round.equations_error:.2f}%"
