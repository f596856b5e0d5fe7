"""`loratwin recommend` and `loratwin quickstart`: a configuration for one GPU from the shipped models,
checked with the twin, and a walkthrough on a built-in example. They run on the core dependencies."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from loratwin.cli.app import app

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)

# loratwin.plan.place_checks.DEFAULT_MAX_WAIT_S, written out so that start-up does not import the planner
# (numpy, the profiles, the workload models); tests/cli/test_startup.py checks that the two agree.
DEFAULT_MAX_WAIT_S = 60.0
QUICKSTART_EXAMPLE = "quickstart.csv"
ADAPTERS_SHOWN = 6


def _print_recommendation(rec: Any, command_out: Path | None) -> None:
    import shlex

    from loratwin.plan.recommend import Recommendation

    assert isinstance(rec, Recommendation)
    shown = ", ".join(rec.served_adapter_ids[:ADAPTERS_SHOWN]) + (", ..." if rec.served > ADAPTERS_SHOWN else "")
    stdout.print(f"[bold]Recommendation[/bold] for {rec.adapters_given} adapters on {rec.profile} ({rec.model_id}):")
    stdout.print(f"  serve {rec.served} of the {rec.adapters_given} adapters on one GPU ({rec.selection_rule}: {shown})")
    stdout.print(f"  --max-loras {rec.max_loras}  --max-cpu-loras {rec.max_cpu_loras}  --max-lora-rank {rec.max_lora_rank}")
    answer = rec.refinement["models_answer"] if rec.refinement else {"served": rec.served, "max_loras": rec.max_loras}
    moved = (answer["served"], answer["max_loras"]) != (rec.served, rec.max_loras)
    if moved:
        point = rec.refinement["point"]
        stdout.print(f"  simulated throughput {point['total_tok_s']:,.0f} tok/s (throughput/offered "
                     f"{point['throughput_over_offered']:.3f}); the models' own answer was served {answer['served']}, "
                     f"max_loras {answer['max_loras']}: {rec.predicted_total_tok_s:,.0f} tok/s predicted, "
                     f"P(starved) {rec.starved_probability:.2f}")
    else:
        stdout.print(f"  predicted throughput {rec.predicted_total_tok_s:,.0f} tok/s for {rec.offered_tok_s:,.0f} tok/s "
                     f"offered; P(starved) {rec.starved_probability:.2f}")
    if rec.served < rec.adapters_given:
        stdout.print(f"  the other {rec.adapters_given - rec.served} adapters need more GPUs")
    for note in rec.notes:
        stdout.print(f"  note: {note}")
    stdout.print("[bold]Why[/bold] (models: throughput "
                 f"{rec.models['throughput']}, starvation {rec.models['starvation']}):")
    for line in rec.why:
        stdout.print(f"  {line}", markup=False)
    o = rec.optimum_models
    stdout.print(f"[bold]Optimum models[/bold] ({o['best_served_family']}; the published method's answer straight from the mix): served {o['served']}, "
                 f"max_loras {o['max_loras']}, {o['best_total_tok_s']:,.0f} tok/s")
    if rec.refinement is not None:
        r, m = rec.refinement, rec.refinement["models_answer"]
        moved = (m["served"], m["max_loras"]) != (r["served"], r["max_loras"])
        p = r["point"]
        result = "cannot start" if p["status"] != "ok" else f"{p['total_tok_s']:,.0f} tok/s, {_point_state(p)}"
        stdout.print(f"[bold]Twin refinement[/bold] ({r['simulations']} simulations of {r['duration_s']:g} s): "
                     + (f"moved from the models' served {m['served']}, max_loras {m['max_loras']} "
                        f"along {' -> '.join(f'({a}, {b})' for a, b in r['path'])}" if moved
                        else "the models' answer is the best point nearby")
                     + f"; the twin there: {result}")
    if rec.verification is not None:
        v = rec.verification
        stdout.print(f"[bold]Twin check[/bold] ({v['duration_s']:g} s simulated per point): {v['verdict']}")
        for p in v["points"]:
            mark = "*" if p["recommended"] else " "
            if p["status"] != "ok":
                stdout.print(f"  {mark} served {p['served']:>4}  max_loras {p['max_loras']:>4}  {p['status']}")
                continue
            stdout.print(f"  {mark} served {p['served']:>4}  max_loras {p['max_loras']:>4}  {p['total_tok_s']:>9,.0f} tok/s  "
                         f"{_point_state(p)} (throughput/offered {p['throughput_over_offered']:.3f}{_waits(p)})")
    command = shlex.join(rec.vllm_command[: rec.vllm_command.index("--lora-modules") + 1])
    modules = rec.vllm_command[rec.vllm_command.index("--lora-modules") + 1 :]
    stdout.print("[bold]Serve it[/bold]:")
    if command_out is not None:
        command_out.write_text("#!/bin/sh\n" + shlex.join(rec.vllm_command) + "\n", encoding="utf-8")
        stdout.print(f"  {command} ... ({len(modules)} adapters; full command written to {command_out})", markup=False)
    elif len(modules) <= ADAPTERS_SHOWN:
        stdout.print(f"  {shlex.join(rec.vllm_command)}", markup=False)
    else:
        stdout.print(f"  {command} {' '.join(modules[:2])} ... ({len(modules)} adapters; "
                     "the full command: --command-out FILE or --json)", markup=False)


def _waits(point: dict) -> str:
    parts = [f"{label} {point[key]:.0f} s" for key, label in (("mean_ttft_s", "mean TTFT"), ("wait_s", "idle adapters' TTFT"))
             if point.get(key) is not None]
    return "".join(", " + part for part in parts)


def _point_state(point: dict) -> str:
    if point["starved"]:
        return "STARVED"
    return "WAITS TOO LONG" if point.get("waits_too_long") else "ok"


@app.command("recommend")
def recommend(
    workload: Annotated[Path, typer.Argument(help="Adapters CSV (adapter_id,rank,rate) or workload YAML.")],
    profile: Annotated[str, typer.Option(help="Built-in profile (model x GPU) whose models to use.")] = "llama-3.1-8b-instruct",
    models: Annotated[Path | None, typer.Option(help="A directory written by `loratwin train` instead of the shipped models.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Family of the per-configuration models (default: the profile's).")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Run the twin at the recommendation and its neighbours.")] = False,
    refine: Annotated[bool, typer.Option("--refine", help="Move the recommendation with the twin: local search from the models' answer to the best point that does not starve.")] = False,
    duration: Annotated[float, typer.Option(help="With --verify/--refine: simulated seconds per point.")] = 3600.0,
    seed: Annotated[int, typer.Option(help="With --verify/--refine: the twin's seed.")] = 0,
    max_wait: Annotated[float, typer.Option(help="Refuse configurations whose requests would wait longer than this many seconds, on average, for a place in the batch ('inf': the published starvation rule alone, which allows waits of minutes for quiet adapters).")] = DEFAULT_MAX_WAIT_S,
    adapter_dir: Annotated[str, typer.Option(help="Where the adapters lie, for the vllm serve command.")] = "./adapters",
    command_out: Annotated[Path | None, typer.Option(help="Write the full vllm serve command to this file.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the recommendation as one JSON document on stdout.")] = False,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report of the recommendation here.")] = None,
) -> None:
    """Recommend max_loras and how many of these adapters one GPU serves without starving."""
    import json

    from loratwin.learn.bundle import load_model_set
    from loratwin.plan.recommend import read_workload
    from loratwin.plan.recommend import recommend as run_recommend

    spec = read_workload(workload)
    model_set = load_model_set(models) if models is not None else None
    wait_limit = None if max_wait == float("inf") else max_wait
    rec = run_recommend(spec, profile, models=model_set, throughput_model=model, starvation_model=model,
                        max_wait_s=wait_limit, adapter_dir=adapter_dir)
    rec = _check_with_twin(rec, spec, profile, verify=verify, refine=refine, duration_s=duration, seed=seed,
                           adapter_dir=adapter_dir, max_wait_s=wait_limit)
    if report is not None:
        from loratwin.report import write_plan_report

        doc = rec.to_dict()
        gpu = {
            "gpu": 0, "adapters": doc["served_adapter_ids"], "served": doc["served"], "max_loras": doc["max_loras"],
            "max_cpu_loras": doc["max_cpu_loras"], "max_lora_rank": doc["max_lora_rank"],
            "offered_tok_s": doc["offered_tok_s"], "predicted_tok_s": doc["predicted_total_tok_s"],
            "starvation_risk": doc["starved_probability"], "predicted_starved": False,
            "predicted_wait_s": doc["predicted_wait_s"],
        }
        plan = {"profile": doc["profile"], "model": doc["model_id"], "algorithm": f"recommend ({doc['source']})",
                "check": "the shipped models", "gpus": [gpu], "predicted_tok_s": doc["predicted_total_tok_s"],
                "offered_tok_s": doc["offered_tok_s"], "vllm_serve_commands": [" ".join(doc["vllm_command"])]}
        typer.echo(f"wrote report {write_plan_report(plan, report)}", err=True)
    if json_out:
        print(json.dumps(rec.to_dict(), indent=1, allow_nan=False))
        return
    _print_recommendation(rec, command_out)


def _check_with_twin(rec: Any, spec: Any, profile: str, *, verify: bool, refine: bool, duration_s: float = 3600.0,
                     seed: int = 0, adapter_dir: str = "./adapters", max_wait_s: float | None = DEFAULT_MAX_WAIT_S) -> Any:
    from loratwin.plan.recommend import apply_refinement
    from loratwin.plan.recommend import refine as run_refine
    from loratwin.plan.recommend import verify as run_verify

    if refine:
        stderr.print(f"refining with the twin ({duration_s:g} s simulated per point) ...")
        rec = apply_refinement(rec, run_refine(rec, spec, profile, duration_s=duration_s, seed=seed, max_wait_s=max_wait_s),
                               spec, adapter_dir)
    if verify:
        stderr.print(f"checking with the twin ({duration_s:g} s simulated per point) ...")
        rec.verification = run_verify(rec, spec, profile, duration_s=duration_s, seed=seed, max_wait_s=max_wait_s)
    return rec


@app.command("quickstart")
def quickstart(
    check: Annotated[bool, typer.Option("--check/--no-check", help="Check and refine the models' answer with the twin (a few seconds).")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the recommendation as one JSON document on stdout.")] = False,
) -> None:
    """Recommend a configuration for a built-in example of 240 adapters and place them all on GPUs, with a short walkthrough."""
    import json
    from importlib import resources

    from loratwin.plan.recommend import read_adapters_csv
    from loratwin.plan.recommend import recommend as run_recommend

    profile = "llama-3.1-8b-instruct"
    with resources.as_file(resources.files("loratwin.plan") / "examples" / QUICKSTART_EXAMPLE) as path:
        spec = read_adapters_csv(path)
        example = str(path)
    rec = run_recommend(spec, profile)
    if check:
        rec = _check_with_twin(rec, spec, profile, verify=True, refine=True)
    placement, verification = _place_all(spec, profile, verify=check) if rec.served < len(spec.adapters) else (None, None)
    if json_out:
        doc = rec.to_dict() | {"example": example}
        if placement is not None:
            doc["placement"] = placement.to_dict() | ({"verification": verification.to_dict()} if verification else {})
        print(json.dumps(doc, indent=1, allow_nan=False))
        return
    rates = [a.rate_req_s for a in spec.adapters]
    ranks = sorted({a.rank for a in spec.adapters})
    stdout.print("[bold]loratwin quickstart[/bold]: how many LoRA adapters can one GPU serve, with which flags, "
                 "and how many GPUs do they all need?\n")
    stdout.print(f"1. The example: {len(rates)} adapters (ranks {', '.join(map(str, ranks))}) asking for "
                 f"{sum(rates):.1f} req/s together, a few busy ones ({max(rates):g} req/s) and many quiet ones "
                 f"({min(rates):g} req/s).\n   File: {example} (columns adapter_id,rank,rate).\n")
    stdout.print("2. The models (trained on the twin's simulations, shipped as JSON) score every (served, max_loras) "
                 "pair in a millisecond and keep the best one predicted not to starve that the placement cost model "
                 f"accepts (within capacity, requests waiting at most {DEFAULT_MAX_WAIT_S:g} s on average for a place "
                 "in the batch)"
                 + ("; then the twin simulates an hour at that point and its neighbours and moves to the best one "
                    f"that neither starves nor keeps requests over {DEFAULT_MAX_WAIT_S:g} s from their first token:\n"
                    if check else ":\n"))
    _print_recommendation(rec, None)
    step = 3
    if placement is not None:
        _print_quickstart_placement(placement, verification)
        step = 4
    stdout.print(f"\n{step}. Next:")
    stdout.print(f"  loratwin recommend {example} --refine --verify   # the same from the command line")
    if placement is not None:
        stdout.print(f"  loratwin place {example} --gpus {placement.gpu_count} --verify   # every GPU's vllm serve command")
    stdout.print("  loratwin recommend my-adapters.csv --profile qwen-2.5-7b-instruct --json   # your own list")
    stdout.print("  loratwin explain --profile llama-3.1-8b-instruct --target starved          # the rules behind it")


def _place_all(spec, profile: str, verify: bool):
    """Every adapter of `spec` on the fewest GPUs the placement needs, the load spread evenly
    over them (as `place --gpus N` does), and with `verify` the twin's hour on each GPU."""
    from loratwin.plan.placement import place, verify_placement

    fewest = place(spec, profile)
    placement = place(spec, profile, gpus=fewest.gpu_count)
    if verify:
        stderr.print(f"verifying the placement with the twin (3600 s simulated on each of {placement.gpu_count} GPUs) ...")
    return placement, verify_placement(placement, profile, duration_s=3600.0) if verify else None


def _print_quickstart_placement(placement, verification) -> None:
    served = sum(len(g.adapters) for g in placement.gpus)
    proof = (" (the lower bound: no placement the cost model accepts uses fewer)" if placement.proven_fewest
             else f" (lower bound {placement.lower_bound})")
    stdout.print(f"\n3. All {served} adapters: `loratwin place` puts them on {placement.gpu_count} GPUs{proof}, "
                 "the load spread evenly, each GPU with its own flags:")
    verified = {v.index: v for v in verification.gpus} if verification is not None else {}
    for g in placement.gpus:
        ranks = ",".join(str(r) for r in sorted({a.rank for a in g.adapters}))
        line = (f"  GPU {g.index}: {len(g.adapters)} adapters (ranks {ranks}, {g.rate_req_s:.1f} req/s)  "
                f"{g.lora_flags}  "
                f"predicted wait {max(g.wait_s, g.queue_s):.1f} s")
        v = verified.get(g.index)
        if v is not None:
            ttft = "" if v.mean_ttft_s is None else f", mean TTFT {v.mean_ttft_s:.1f} s"
            line += (f"; the twin: {v.throughput_over_offered:.3f} of the offered load served{ttft}, "
                     + ("STARVED" if v.starved else "not starved"))
        stdout.print(line)
