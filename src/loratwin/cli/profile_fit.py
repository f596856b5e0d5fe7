"""`loratwin profile fit`: fit a profile on the runs of a lab, with the twin in the loop."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import _progress, err_console
from loratwin.cli.memory import MaxMemoryFlag
from loratwin.cli.profile import profile_app
from loratwin.errors import InputError
from loratwin.files import Output, atomic_write, check_outputs


@profile_app.command("fit")
def fit(
    runs_file: Annotated[Path, typer.Argument(metavar="RUNS.csv", help="The lab's runs in the reference format (`loratwin profile import` writes it).")],
    model: Annotated[str, typer.Option(help="Model: a built-in Hugging Face id or a config.json path (as for `profile derive`).")],
    gpu: Annotated[str, typer.Option(help="GPU: a built-in name or a GPU YAML file (as for `profile derive`).")],
    out: Annotated[Path, typer.Option(help="Profile YAML to write.")],
    gpu_memory_utilization: Annotated[float, typer.Option("--gpu-memory-utilization", help="vLLM's flag, as the runs were served.")] = 0.9,
    max_num_seqs: Annotated[int, typer.Option("--max-num-seqs", help="vLLM's flag, as the runs were served.")] = 2048,
    max_num_batched_tokens: Annotated[int, typer.Option("--max-num-batched-tokens", help="vLLM's flag, as the runs were served.")] = 2048,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="vLLM's flag, as the runs were served (default: the model's).")] = None,
    start: Annotated[str | None, typer.Option(help="Start from this profile (built-in name or YAML) instead of the derived one.")] = None,
    runs_model: Annotated[str | None, typer.Option("--runs-model", help="The model's name in the runs file (default: the last part of --model).")] = None,
    name: Annotated[str | None, typer.Option(help="Profile name (default: the --out file's name).")] = None,
    rounds: Annotated[int, typer.Option(help="Rounds of the twin-in-the-loop fit.")] = 8,
    seeds: Annotated[int, typer.Option(help="Seeds per run in each round (arrivals were not recorded).")] = 1,
    workers: Annotated[int, typer.Option(help="Processes (0: all cores).")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the fit's summary as one JSON document on stdout.")] = False,
    max_memory: MaxMemoryFlag = None,
) -> None:
    """Fit every step-time term of a profile on measured runs (no isolated measurements needed); write it as YAML."""
    import json
    import shlex

    from loratwin.budget import configure

    configure("profile fit", max_memory)
    _check_flags(gpu_memory_utilization, max_num_seqs, max_num_batched_tokens, max_model_len, rounds, seeds, workers, out)
    check_outputs(Output("--out", out), inputs=[runs_file])

    import yaml

    from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
    from loratwin.validate import load_runs
    from loratwin.validate.fit_profile import FIT_COLUMNS, fit_header, fit_profile, select_fit_runs, usable

    arch, gpu_spec = resolve_model(model), resolve_gpu(gpu)
    flags = {"gpu_memory_utilization": gpu_memory_utilization, "max_num_seqs": max_num_seqs,
             "max_num_batched_tokens": max_num_batched_tokens, "max_model_len": max_model_len}
    runs = select_fit_runs(load_runs(runs_file, required=FIT_COLUMNS), runs_model or arch.name, str(runs_file))
    start_profile, started_from = _start_profile(start, arch, gpu_spec, flags)

    total = sum(usable(r) for r in runs) * seeds * (rounds + 1)
    progress, advance = _progress(total, f"fitting on {len(runs)} runs")

    def on_round(i, fit_round):
        progress.console.print(
            f"round {i}: throughput err {fit_round.throughput_error:.2f}%, ITL err {fit_round.itl_error:.2f}%, "
            f"starvation agreement {100 * fit_round.starvation_agreement:.1f}%", soft_wrap=True,
        )

    engine = (f"vLLM 0.8.5, V1 engine, prefix caching off, max_num_batched_tokens {max_num_batched_tokens}, "
              f"max_num_seqs {max_num_seqs}, gpu_memory_utilization {gpu_memory_utilization:g}")
    with progress:
        result = fit_profile(
            start_profile.model_copy(update={"engine": engine}), runs, name=name or out.stem,
            source=f"loratwin profile fit: {started_from}, fitted on runs of {runs_file}",
            rounds=rounds, seeds=tuple(range(seeds)), workers=workers or None,
            server={"max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens},
            on_round=on_round, on_replay_done=advance,
        )
    command = "loratwin " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = fit_header(result, command, str(runs_file), started_from) + yaml.safe_dump(
        result.profile.model_dump(mode="json"), sort_keys=False)
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    err_console.print(f"wrote {out}", soft_wrap=True)
    summary = {"out": str(out), "started_from": started_from, **result.summary()}
    if json_out:
        print(json.dumps(summary, indent=1, allow_nan=False))
        return
    best = result.best
    print(f"profile {result.profile.name}: fitted on {result.fitted_runs} runs "
          f"({result.kv_points} KV capacities from their logs), started from {started_from}")
    print(f"  throughput err {best.throughput_error:.2f}%, ITL err {best.itl_error:.2f}%, "
          f"starvation agreement {100 * best.starvation_agreement:.1f}% (on the fitted runs)")
    print(f"wrote {out}; next: loratwin train --profile {out} --out MODELS")


def _check_flags(utilization: float, seqs: int, tokens: int, model_len: int | None, rounds: int, seeds: int,
                 workers: int, out: Path) -> None:
    if not 0 < utilization <= 1:
        raise InputError(f"--gpu-memory-utilization: must be in (0, 1], got {utilization:g}")
    for flag, value in (("--max-num-seqs", seqs), ("--max-num-batched-tokens", tokens),
                        ("--max-model-len", model_len), ("--rounds", rounds), ("--seeds", seeds)):
        if value is not None and value < 1:
            raise InputError(f"{flag}: must be >= 1, got {value}")
    if tokens < seqs:
        raise InputError(f"--max-num-batched-tokens ({tokens}) must be >= --max-num-seqs ({seqs}), as vLLM requires")
    if workers < 0:
        raise InputError(f"--workers: must be >= 0 (0: all cores), got {workers}")
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"--out {out}: expected a .yaml file name (a profile is YAML)")


def _start_profile(start, arch, gpu_spec, flags):
    """The profile the fit starts from, and how the fitted profile's header names it."""
    if start is not None:
        from loratwin.profiles import load_profile

        return load_profile(start), f"profile {start}"
    from loratwin.profiles.derive.profile import derive_profile, serve_flags, tokenizer_table_for
    from loratwin.workload.length_tables import available_tables

    derived = derive_profile(arch, gpu_spec, serve_flags(arch, **flags),
                             tokenizer=tokenizer_table_for(arch.name, available_tables()))
    return derived, f"the derived profile of {arch.name} on {gpu_spec.name}"
