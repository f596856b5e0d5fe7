"""`loratwin recommend` and `loratwin quickstart`: a configuration for one GPU (placement on one GPU,
under the same acceptance rule as `place`), checked with the twin, and a walkthrough on a built-in
example. They run on the core dependencies."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from loratwin.cli.app import app
from loratwin.cli.judging import (
    DEFAULT_ADAPTER_DIR,
    DEFAULT_MAX_WAIT_S,
    DEFAULT_STARVATION_THRESHOLD,
    DEFAULT_WINDOW_S,
    AdapterDirFlag,
    CheckFlag,
    MaxWaitFlag,
    ModelsFlag,
    SloFlag,
    ThresholdFlag,
    build_rule,
    check_models_dir,
    pick_window,
)
from loratwin.cli.memory import MaxMemoryFlag, MaxTimeFlag, configure
from loratwin.cli.serving import MetricsPollFlag, WarmFlag, under_conditions
from loratwin.errors import InputError
from loratwin.grammar import plural
from loratwin.slo import slo_line

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)

ADAPTERS_SHOWN = 6
QUICKSTART_PROFILE = "llama-3.1-8b-instruct"


def derived_note(profile: Any) -> str:
    """A warning line for a profile derived from datasheets (`loratwin profile derive`), "" otherwise."""
    if profile.fitted != "derived":
        return ""
    return ("  note: the profile is DERIVED from the model's architecture and the GPU's datasheet and not validated "
            "on this GPU; calibrate it (loratwin profile plan, import, fit) before relying on these numbers")


def _print_recommendation(rec: Any, command_out: Path | None, note: str = "", serving: dict | None = None) -> None:
    import shlex

    from rich.markup import escape

    from loratwin.profiles.serving import conditions_text

    shown = ", ".join(rec.served_adapter_ids[:ADAPTERS_SHOWN]) + (", ..." if rec.served > ADAPTERS_SHOWN else "")
    out = stdout.print
    out(f"[bold]Recommendation[/bold] for {plural(rec.adapters_given, 'adapter')} on {escape(rec.profile)} "
        f"({escape(rec.model_id)}):")
    if note:
        stdout.print(note, markup=False)
    out(f"  serve {rec.served} of the {plural(rec.adapters_given, 'adapter')} on one GPU ({rec.selection_rule}: {shown})",
        markup=False)
    out(f"  --max-loras {rec.max_loras}  --max-cpu-loras {rec.max_cpu_loras}  --max-lora-rank {rec.max_lora_rank}")
    out(f"  predicted throughput {rec.predicted_total_tok_s:,.0f} tok/s for {rec.offered_tok_s:,.0f} tok/s offered; "
        f"mean wait for a batch slot {rec.predicted_wait_s:.1f} s, for KV admission {rec.predicted_kv_queue_s:.1f} s")
    if rec.slos:
        out("  SLOs at the answer: " + slo_line(rec.slos), markup=False)
    if rec.served < rec.adapters_given:
        out(f"  the other {rec.adapters_given - rec.served} adapters need more GPUs (loratwin place)")
    for note in rec.notes:
        out(f"  note: {note}", markup=False)
    limits = rec.limits
    wait = "none" if limits["max_wait_s"] is None else f"{limits['max_wait_s']:g} s"
    slos = f", SLOs {' '.join(limits['slos'])}" if limits.get("slos") else ""
    out(f"[bold]Why[/bold] (the {rec.check} estimator; the rule: starvation threshold "
        f"{limits['starvation_threshold']:g} over {limits['window_s']:g} s, wait limit {wait}{slos}, KV use at most "
        f"{100 * limits['max_kv_use']:.0f}%"
        + (f"; served by a {escape(conditions_text(serving))}" if serving is not None else "") + "):")
    for line in rec.why:
        out(f"  {line}", markup=False)
    published = rec.published_method
    if published is not None:
        trained = published.get("models_slos") or []
        under = f"under the SLOs {escape(' '.join(trained))}" if trained else "the starvation rule alone"
        out(f"[bold]Published method[/bold] (its optimum models, {published['best_served_family']}, straight from the "
            f"whole list's mix; {under}): served {published['served']} (the model says "
            f"{published['best_served']:.0f}, snapped to the training grid and capped at the list), max_loras "
            f"{published['max_loras']}; best throughput for such a mix {published['best_total_tok_s']:,.0f} tok/s "
            f"({published['best_total_tok_s_family']}, at the model's own optimum, not for these adapters)")
    if rec.models_used:
        out("[bold]Learned models[/bold]:")
        for m in rec.models_used:
            where = "shipped with loratwin" if m["shipped"] else "trained by loratwin train"
            families = ", ".join(f"{target}: {family}" for target, family in m["families"].items())
            out(f"  {m['use']}: {m['directory']} ({where}, for profile {m['profile']}; {families})", markup=False)
    if rec.refinement is not None:
        _print_refinement(rec.refinement)
    if rec.verification is not None:
        v = rec.verification
        out(f"[bold]Twin check[/bold] ({v['duration_s']:g} s simulated, {v['simulations']} runs): {escape(v['verdict'])}")
        for p in v["points"]:
            out("  " + _point_line(p, "*" if p["recommended"] else "+1"), markup=False)
    command = shlex.join(rec.vllm_command[: rec.vllm_command.index("--lora-modules") + 1])
    modules = rec.vllm_command[rec.vllm_command.index("--lora-modules") + 1 :]
    out("[bold]Serve it[/bold]:")
    if command_out is not None:
        out(f"  {command} ... ({plural(len(modules), 'adapter')}; full command written to {command_out})", markup=False)
    elif len(modules) <= ADAPTERS_SHOWN:
        out(f"  {shlex.join(rec.vllm_command)}", markup=False)
    else:
        out(f"  {command} {' '.join(modules[:2])} ... ({plural(len(modules), 'adapter')}; "
            "the full command: --command-out FILE or --json)", markup=False)


def _print_refinement(r: dict) -> None:
    first = r["estimator_answer"]
    moved = (first["served"], first["max_loras"]) != (r["served"], r["max_loras"])
    where = (f"moved from served {first['served']}, max_loras {first['max_loras']} to served {r['served']}, "
             f"max_loras {r['max_loras']}" if moved and r["holds"] else
             "the estimator's answer stands" if r["holds"] else "the twin accepts no count near the estimator's answer")
    stdout.print(f"[bold]Twin refinement[/bold] ({r['simulations']} runs of {r['duration_s']:g} s): {where}")
    stdout.print("  " + _point_line(r["point"], " "), markup=False)


def _point_line(p: dict, mark: str) -> str:
    if p["status"] != "ok":
        return f"{mark:>2} served {p['served']:>4}  max_loras {p['max_loras']:>4}  {p['status']}"
    state = "accepted" if p["accepted"] else "REFUSED"
    slos = f"  [{slo_line(p['slos'])}]" if p.get("slos") else ""
    return (f"{mark:>2} served {p['served']:>4}  max_loras {p['max_loras']:>4}  {p['total_tok_s']:>9,.0f} tok/s  "
            f"{state}: {p['deciding_limit']}{slos}")


def _check_with_twin(rec: Any, spec: Any, profile: Any, check: Any, *, verify: bool, refine: bool, seed: int = 0,
                     keep_order: bool = False, adapter_dir: str = DEFAULT_ADAPTER_DIR) -> Any:
    from loratwin.plan.recommend import apply_refinement
    from loratwin.plan.recommend import refine as run_refine
    from loratwin.plan.recommend import verify as run_verify

    rule = check.rule
    if refine:
        stderr.print(f"refining with the twin ({rule.window_s:g} s simulated per run) ...")
        refinement = run_refine(rec, spec, profile, rule=rule, seed=seed, keep_order=keep_order)
        rec = apply_refinement(rec, refinement, spec, profile, check, keep_order=keep_order, adapter_dir=adapter_dir)
    if verify:
        stderr.print(f"checking with the twin ({rule.window_s:g} s simulated per run) ...")
        rec.verification = run_verify(rec, spec, profile, rule=rule, seed=seed, keep_order=keep_order)
    return rec


def _write_command(rec: Any, command_out: Path) -> None:
    """The full `vllm serve` command as a shell script, written whole (a file the user had is replaced at once)."""
    import shlex

    from loratwin.files import atomic_write

    text = "#!/bin/sh\n" + shlex.join(rec.vllm_command) + "\n"
    atomic_write(command_out, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@app.command("recommend")
def recommend(
    workload: Annotated[Path, typer.Argument(help="Adapters CSV (adapter_id,rank,rate), workload YAML or trace directory.")],
    profile: Annotated[str, typer.Option(help="Built-in profile name or a profile YAML file.")] = "llama-3.1-8b-instruct",
    check: CheckFlag = "auto",
    models: ModelsFlag = None,
    max_wait: MaxWaitFlag = None,
    slo: SloFlag = None,
    starvation_threshold: ThresholdFlag = DEFAULT_STARVATION_THRESHOLD,
    window: Annotated[float | None, typer.Option("--window", help=f"The window the rule judges starvation over: the cost model's window, and simulated seconds per run for --verify, --refine and the twin check (default {DEFAULT_WINDOW_S:g}).")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="The same as --window.")] = None,
    keep_order: Annotated[bool, typer.Option("--keep-order", help="Serve the first adapters in the order given (e.g. by priority) instead of the order placement fills a GPU in.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Run the twin at the recommendation and with one adapter more, judged by the same rule.")] = False,
    refine: Annotated[bool, typer.Option("--refine", help="Move the recommendation to the most adapters the twin accepts near it, at the best max_loras nearby.")] = False,
    seed: Annotated[int, typer.Option(help="With --verify/--refine/--check twin: the twin's seed.")] = 0,
    adapter_dir: AdapterDirFlag = DEFAULT_ADAPTER_DIR,
    command_out: Annotated[Path | None, typer.Option(help="Write the full vllm serve command to this file.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the recommendation as one JSON document on stdout.")] = False,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report of the recommendation here.")] = None,
    warm: WarmFlag = None,
    metrics_poll: MetricsPollFlag = None,
    max_memory: MaxMemoryFlag = None,
    max_time: MaxTimeFlag = None,
) -> None:
    """How many of these adapters one GPU serves, with which --max-loras: placement on one GPU."""
    import json


    configure("recommend", max_memory, max_time, kind="recommend")
    from loratwin.plan import load_adapters, make_check
    from loratwin.plan import recommend as run_recommend
    from loratwin.profiles import load_profile
    from loratwin.profiles.serving import conditions

    window, window_flag = pick_window(window, duration, "--duration")
    rule = build_rule(max_wait, starvation_threshold, window, window_flag, slo)
    from loratwin.plan.placement.result import check_adapter_dir

    check_adapter_dir(adapter_dir)
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    _check_output_places(command_out, report, workload)
    spec = load_adapters(workload)
    loaded = under_conditions(load_profile(profile), warm, metrics_poll)
    check_models_dir(models, profile=loaded.name)
    estimator = make_check(check, loaded, spec.lengths, rule=rule, arrival=spec.arrival, models_dir=models)
    rec = run_recommend(spec, loaded, check=estimator, keep_order=keep_order, adapter_dir=adapter_dir, models=models,
                        profile_source=profile)
    rec = _check_with_twin(rec, spec, loaded, estimator, verify=verify, refine=refine, seed=seed, keep_order=keep_order,
                           adapter_dir=adapter_dir)
    if command_out is not None:
        _write_command(rec, command_out)
    if report is not None:
        from loratwin.report import write_plan_report
        from loratwin.report.plan import plan_from_recommendation

        stderr.print(f"wrote report {write_plan_report(plan_from_recommendation(rec.to_dict()), report)}", markup=False)
    if json_out:
        print(json.dumps(rec.to_dict() | {"serving": conditions(loaded)}, indent=1, allow_nan=False))
        return
    _print_recommendation(rec, command_out, derived_note(loaded), conditions(loaded))


def _check_output_places(command_out: Path | None, report: Path | None, workload: Path) -> None:
    from loratwin.files import Output, check_outputs
    from loratwin.report.html import REPORT_FILES

    check_outputs(Output("--command-out", command_out), Output("--report", report, folder=True, own=REPORT_FILES),
                  inputs=[workload])


@app.command("quickstart")
def quickstart(
    profile: Annotated[str, typer.Option(help="Built-in profile name or a profile YAML file (e.g. one `loratwin profile derive` wrote).")] = QUICKSTART_PROFILE,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Check and refine the answer with the twin (a few seconds).")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the recommendation as one JSON document on stdout.")] = False,
) -> None:
    """Recommend a configuration for a built-in example of 240 adapters and place them all on GPUs, with a short walkthrough."""
    import json
    import shlex

    from loratwin.plan import AcceptanceRule, make_check, read_adapters_csv
    from loratwin.plan import recommend as run_recommend
    from loratwin.plan.inputs import QUICKSTART_CSV
    from loratwin.profiles import load_profile
    from loratwin.profiles.serving import conditions

    profile_name, profile = profile, load_profile(profile)
    spec = read_adapters_csv(QUICKSTART_CSV)
    example = str(QUICKSTART_CSV)
    rule = AcceptanceRule()
    estimator = make_check("auto", profile, spec.lengths, rule=rule)
    rec = run_recommend(spec, profile, check=estimator)
    if check:
        rec = _check_with_twin(rec, spec, profile, estimator, verify=True, refine=True)
    placement, verification = _place_all(spec, profile, rule, verify=check) if rec.served < len(spec.adapters) else (None, None)
    if json_out:
        doc = rec.to_dict() | {"example": example, "serving": conditions(profile)}
        if placement is not None:
            doc["placement"] = placement.to_dict() | ({"verification": verification.to_dict()} if verification else {})
        print(json.dumps(doc, indent=1, allow_nan=False))
        return
    rates = [a.rate_req_s for a in spec.adapters]
    ranks = sorted({a.rank for a in spec.adapters})
    stdout.print("[bold]loratwin quickstart[/bold]: how many LoRA adapters can one GPU serve, with which flags, "
                 "and how many GPUs do they all need?\n")
    stdout.print(f"1. The example: {plural(len(rates), 'adapter')} (ranks {', '.join(map(str, ranks))}) asking for "
                 f"{sum(rates):.1f} req/s together, a few busy ones ({max(rates):g} req/s) and many quiet ones "
                 f"({min(rates):g} req/s).\n   File: {example} (columns adapter_id,rank,rate).\n", markup=False)
    stdout.print("2. One GPU is filled the way `loratwin place` fills each GPU: a cost model of the twin predicts, in "
                 "milliseconds, what each count of adapters and each --max-loras would do, and the acceptance rule "
                 "keeps what serves the offered load without starving (the published rule: 1 - throughput/offered "
                 f"< 0.1 over an hour), with requests waiting at most {DEFAULT_MAX_WAIT_S:g} s on average for a place "
                 "in the batch or for the KV cache"
                 + ("; then the twin simulates an hour around that answer, judged by the same rule:\n"
                    if check else ":\n"))
    _print_recommendation(rec, None, derived_note(profile), conditions(profile))
    step = 3
    if placement is not None:
        _print_quickstart_placement(placement, verification)
        step = 4
    stdout.print(f"\n{step}. Next:")
    on_profile = "" if profile_name == QUICKSTART_PROFILE else f" --profile {shlex.quote(profile_name)}"
    stdout.print(f"  loratwin recommend {example}{on_profile} --refine --verify   # the same from the command line", markup=False)
    if placement is not None:
        stdout.print(f"  loratwin place {example}{on_profile} --gpus {placement.gpu_count} --verify   # every GPU's vllm serve command",
                     markup=False)
    stdout.print("  loratwin recommend my-adapters.csv --profile qwen-2.5-7b-instruct --json   # your own list")
    stdout.print("  loratwin place my-adapters.csv --max-wait 20 --compare                    # a stricter wait limit")


def _place_all(spec, profile, rule, verify: bool):
    """Every adapter of `spec` on the fewest GPUs the placement needs, the load spread evenly
    over them (as `place --gpus N` does), and with `verify` the twin's hour on each GPU."""
    from loratwin.plan import place, verify_placement

    fewest = place(spec, profile)
    placement = place(spec, profile, gpus=fewest.gpu_count)
    if verify:
        stderr.print(f"verifying the placement with the twin (3600 s simulated on each of {plural(placement.gpu_count, 'GPU')}) ...")
    return placement, verify_placement(placement, profile, duration_s=rule.window_s, rule=rule) if verify else None


def _print_quickstart_placement(placement, verification) -> None:
    served = sum(len(g.adapters) for g in placement.gpus)
    proof = (" (the lower bound: no placement the cost model accepts uses fewer)" if placement.proven_fewest
             else f" (lower bound {placement.lower_bound})")
    stdout.print(f"\n3. All {plural(served, 'adapter')}: `loratwin place` puts them on {plural(placement.gpu_count, 'GPU')}{proof}, "
                 "the load spread evenly, each GPU with its own flags:")
    verified = {v.index: v for v in verification.gpus} if verification is not None else {}
    for g in placement.gpus:
        ranks = ",".join(str(r) for r in sorted({a.rank for a in g.adapters}))
        line = (f"  GPU {g.index}: {plural(len(g.adapters), 'adapter')} (ranks {ranks}, {g.rate_req_s:.1f} req/s)  "
                f"{g.lora_flags}  tightest limit: {g.deciding}")
        v = verified.get(g.index)
        if v is not None:
            ttft = "" if v.mean_ttft_s is None else f", mean TTFT {v.mean_ttft_s:.1f} s"
            line += (f"; the twin: {v.throughput_over_offered:.3f} of the offered load served{ttft}, "
                     + ("accepted" if v.accepted else f"REFUSED ({v.deciding})"))
        stdout.print(line, markup=False)
