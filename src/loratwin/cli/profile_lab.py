"""`loratwin profile plan`, `make-adapters` and `import`: the real runs that calibrate a profile."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import _out_console, err_console
from loratwin.cli.profile import profile_app
from loratwin.errors import InputError
from loratwin.grammar import plural

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")]


@profile_app.command("plan")
def plan(
    model: Annotated[str, typer.Option(help="Built-in model (Hugging Face id) or a config.json path.")],
    gpu: Annotated[str, typer.Option(help="Built-in GPU name or a GPU YAML file.")],
    gpu_memory_utilization: Annotated[float, typer.Option("--gpu-memory-utilization", help="vLLM's share of GPU memory.")] = 0.9,
    max_num_seqs: Annotated[int, typer.Option("--max-num-seqs", help="Most requests running at once.")] = 2048,
    max_num_batched_tokens: Annotated[int, typer.Option("--max-num-batched-tokens", help="Token budget per engine step.")] = 2048,
    max_model_len: Annotated[int, typer.Option("--max-model-len", help="Longest request the servers accept.")] = 4096,
    adapter_dir: Annotated[str, typer.Option("--adapter-dir", help="Where make-adapters puts the adapters (one folder per rank).")] = "./adapters",
    results_dir: Annotated[str, typer.Option("--results-dir", help="Where each run's server log and result files go.")] = "./runs",
    seed: Annotated[int, typer.Option(help="Seed of the benchmark clients (each run and rate level adds its own offset).")] = 0,
    json_out: JsonFlag = False,
) -> None:
    """Print the short list of real vLLM 0.8.5 runs (and their commands) that calibrates a profile."""
    from loratwin.lab.capacity import gpu_capacity
    from loratwin.lab.commands import client_commands, make_adapters_commands, run_script, serve_command
    from loratwin.lab.plan import STARTUP_ALLOWANCE_S, TAIL_ALLOWANCE_S, PlanFlags, plan_experiments, total_gpu_s
    from loratwin.plan.placement.result import check_adapter_dir
    from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model

    check_adapter_dir(adapter_dir)
    flags = PlanFlags(gpu_memory_utilization, max_num_seqs, max_num_batched_tokens, max_model_len, adapter_dir,
                      results_dir, seed)
    arch, spec = resolve_model(model), resolve_gpu(gpu)
    runs = plan_experiments(arch, spec, flags)
    cap = gpu_capacity(arch, spec, gpu_memory_utilization)
    served = _served_model(model, arch.name)
    total = total_gpu_s(runs)
    make = make_adapters_commands(served if served == arch.name else model, runs)
    if json_out:
        import json
        from dataclasses import asdict

        doc = {
            "model": served, "gpu": spec.name,
            "rough_capacity": {"sharegpt_req_s": cap.sharegpt_req_s, "decode_tok_s": cap.decode_tok_s,
                               "prefill_tok_s": cap.prefill_tok_s},
            "make_adapters": [_join(c) for c in make],
            "runs": [{**{k: v for k, v in asdict(r).items() if k != "flags"}, **r.as_runs_row(),
                      "estimated_gpu_s": r.estimated_gpu_s, "serve_command": serve_command(r, served),
                      "client_commands": client_commands(r, served), "script": run_script(r, served)} for r in runs],
            "flags": asdict(flags), "total_gpu_s": total,
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    out = _out_console()
    say = lambda text="": out.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"# Calibration plan: {served} on {spec.name} (vLLM 0.8.5)")
    say(f"# Rough saturated throughput: {cap.sharegpt_req_s:.1f} req/s of ShareGPT requests ({cap.decode_tok_s:,.0f} tok/s), "
        "from bandwidth / weight bytes; it places the rate levels only.")
    say("# Run from a checkout of vLLM v0.8.5 (git clone --branch v0.8.5 https://github.com/vllm-project/vllm), with "
        "ShareGPT_V3_unfiltered_cleaned_split.json there.")
    say("\n# 1. Adapters")
    for command in make:
        say(_join(command))
    say("\n# 2. Runs (one at a time: start the server, wait for it, run one client per rate level, stop the server)")
    for r in runs:
        rates = ", ".join(f"{c} x {v:g}" for v, c in zip(r.rate_values, r.rate_counts, strict=True))
        say(f"\n#   max_loras {r.max_loras}, {plural(r.served_adapters, 'adapter')} (ranks {' '.join(map(str, r.adapter_rank_cycle))}), "
            f"max_lora_rank {r.max_lora_rank}, rates {rates} req/s, {r.duration_s:g} s, "
            f"{r.dataset}; about {r.estimated_gpu_s / 60:.1f} GPU-minutes")
        say(run_script(r, served))
    say(f"\n# Total: {plural(len(runs), 'run')}, about {total / 3600:.1f} GPU-hours (each: its send window, a start-up "
        f"allowance of {STARTUP_ALLOWANCE_S:g} s, a {TAIL_ALLOWANCE_S:g} s tail, and draining what saturating runs "
        "leave queued)")
    say("\n# 3. Import the results")
    say(f"loratwin profile import {results_dir.rstrip('/')}/* --out runs.csv --kv-out kv_capacity.csv")


@profile_app.command("make-adapters")
def make_adapters(
    model: Annotated[str, typer.Option(help="Built-in model (Hugging Face id) or a config.json path.")],
    rank: Annotated[int, typer.Option(help="LoRA rank r.")],
    count: Annotated[int, typer.Option(help="Number of adapters.")],
    out: Annotated[Path, typer.Option(help="Folder to write (adapter-000, adapter-001, ... inside).")],
    seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0,
    json_out: JsonFlag = False,
) -> None:
    """Write random-weight LoRA adapters in the PEFT layout (adapter_config.json, adapter_model.safetensors)."""
    from loratwin.budget import configure, format_bytes
    from loratwin.files import Output, check_outputs, written_whole
    from loratwin.lab.adapters import (
        ADAPTER_FOLDERS,
        adapter_folder,
        check_adapter_flags,
        check_adapters_fit,
        write_adapters,
    )
    from loratwin.profiles.derive.catalog import resolve_model

    configure("profile make-adapters")
    check_adapter_flags(rank, count, seed)
    check_outputs(Output("--out", out, folder=True, own=ADAPTER_FOLDERS))
    arch = resolve_model(model)
    size = check_adapters_fit(arch, rank, count, out)
    with written_whole(out, ADAPTER_FOLDERS) as tmp:
        write_adapters(arch, rank, count, seed, tmp)
    if json_out:
        import json

        doc = {"out": str(out), "model": arch.name, "rank": rank, "seed": seed, "bytes": size,
               "adapters": [adapter_folder(i) for i in range(count)]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        err_console.print(f"wrote {plural(count, 'adapter')} of rank {rank} for {arch.name} ({format_bytes(size)}) to {out}",
                          soft_wrap=True)


@profile_app.command("import")
def import_runs(
    result_dirs: Annotated[list[Path], typer.Argument(help="Run folders: each a server.log and its clients' result JSON files.")],
    out: Annotated[Path, typer.Option(help="Runs table to write (CSV, the reference runs.csv format).")],
    kv_out: Annotated[Path | None, typer.Option("--kv-out", help="Also write the KV capacities (kv_capacity.csv format).")] = None,
    source_set: Annotated[str, typer.Option("--set", help="The runs' source_set column.")] = "imported",
    json_out: JsonFlag = False,
) -> None:
    """Read vLLM benchmark result files and server logs into a runs table (what validate and fit read)."""
    from loratwin.budget import configure
    from loratwin.files import Output, check_outputs
    from loratwin.lab.importer import import_runs as read_runs
    from loratwin.lab.importer import write_kv_csv, write_runs_csv

    configure("profile import")
    for flag, path in (("--out", out), ("--kv-out", kv_out)):
        if path is not None and path.suffix != ".csv":
            raise InputError(f"{flag} {path}: expected a .csv file name")
    check_outputs(Output("--out", out), Output("--kv-out", kv_out), inputs=result_dirs)
    rows = read_runs(result_dirs, source_set)
    write_runs_csv(rows, out)
    if kv_out is not None:
        write_kv_csv(rows, kv_out)
    err_console.print(f"wrote {plural(len(rows), 'run')} to {out}" + (f" and their KV capacities to {kv_out}" if kv_out else ""),
                      soft_wrap=True)
    if json_out:
        import json

        sys.stdout.write(json.dumps({"out": str(out), "runs": rows}, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table("run", "status", "max_loras", "adapters", "max_lora_rank", "KV tokens", "total tok/s", "mean TTFT ms")
    for r in rows:
        table.add_row(*(_shown(r.get(k)) for k in ("run_id", "status", "max_loras", "served_adapters", "max_lora_rank",
                                                   "kv_cache_tokens", "total_tok_s", "mean_ttft_ms")))
    _out_console().print(table)


def _shown(value: object) -> str:
    from rich.markup import escape

    if value is None:
        return "-"
    return escape(f"{value:,.1f}" if isinstance(value, float) else str(value))


def _served_model(given: str, name: str) -> str:
    """What `vllm serve` is given: a built-in model's Hugging Face id, or the folder of a config.json."""
    path = Path(given)
    if path.suffix == ".json":
        return str(path.parent)
    return str(path) if path.exists() else name


def _join(command: list[str]) -> str:
    import shlex

    return shlex.join(command)
