"""`loratwin profile derive`: a profile from a model's architecture and a GPU's datasheet, no measurements."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import _out_console, err_console
from loratwin.cli.profile import profile_app
from loratwin.errors import InputError


@profile_app.command("derive")
def derive(
    model: Annotated[str | None, typer.Option(help="A built-in model (Hugging Face id, see --list) or a config.json path.")] = None,
    gpu: Annotated[str | None, typer.Option(help="A built-in GPU (see --list) or a GPU YAML file (the fields of the built-in ones).")] = None,
    out: Annotated[Path | None, typer.Option(help="Profile YAML to write.")] = None,
    gpu_memory_utilization: Annotated[float, typer.Option("--gpu-memory-utilization", help="vLLM's share of GPU memory, in (0, 1].")] = 0.9,
    max_num_seqs: Annotated[int, typer.Option("--max-num-seqs", help="vLLM's --max-num-seqs (the sampler's warm-up sizes memory by it).")] = 256,
    max_num_batched_tokens: Annotated[int, typer.Option("--max-num-batched-tokens", help="vLLM's token budget per step.")] = 2048,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="vLLM's --max-model-len. Default: the model's max_position_embeddings.")] = None,
    list_builtin: Annotated[bool, typer.Option("--list", help="List the built-in models and GPUs, and exit.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With --list: print the lists as JSON.")] = False,
) -> None:
    """Derive a profile from the model's architecture and the GPU's datasheet (roofline step time, vLLM's
    memory model), without measurements. The profile says it is derived: it is not validated on that GPU."""
    if list_builtin:
        _print_builtin(json_out)
        return
    if json_out:
        raise InputError("--json: lists as JSON with --list only; a derived profile is written to --out")
    missing = [flag for flag, value in (("--model", model), ("--gpu", gpu), ("--out", out)) if value is None]
    if missing:
        raise InputError(f"{', '.join(missing)}: required to derive a profile (or --list to see the built-in models and GPUs)")
    import shlex

    from loratwin.files import Output, atomic_write, check_outputs
    from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
    from loratwin.profiles.derive.profile import derive_profile, derived_profile_yaml, serve_flags, tokenizer_table_for
    from loratwin.workload.length_tables import DEFAULT_TABLE, available_tables

    if out.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"--out {out}: expected a .yaml file name (a profile is YAML)")
    check_outputs(Output("--out", out), inputs=[Path(model), Path(gpu)])
    arch, spec = resolve_model(model), resolve_gpu(gpu)
    flags = serve_flags(arch, gpu_memory_utilization=gpu_memory_utilization, max_num_seqs=max_num_seqs,
                        max_num_batched_tokens=max_num_batched_tokens, max_model_len=max_model_len)
    tokenizer = tokenizer_table_for(arch.name, available_tables())
    profile = derive_profile(arch, spec, flags, tokenizer=tokenizer)
    command = "loratwin " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = derived_profile_yaml(profile, command)
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    lengths = tokenizer or f"{DEFAULT_TABLE} (no table for this model's tokenizer)"
    err_console.print(f"wrote {out}: {profile.name}, DERIVED from architecture and datasheet, not validated on "
                      f"this GPU; request lengths: {lengths}", soft_wrap=True)


def _print_builtin(json_out: bool) -> None:
    from loratwin.profiles.derive.catalog import builtin_gpus, builtin_models, resolve_gpu, resolve_model

    models = [resolve_model(m) for m in builtin_models()]
    gpus = [resolve_gpu(g) for g in builtin_gpus()]
    if json_out:
        import json

        doc = {"models": [{"name": m.name, "parameters": m.parameters, "layers": m.num_hidden_layers,
                           "kv_bytes_per_token": m.kv_bytes_per_token,
                           "max_position_embeddings": m.max_position_embeddings} for m in models],
               "gpus": [{"name": g.name, "description": g.description, "memory_gb": g.memory_gb,
                         "memory_bandwidth_gb_s": g.memory_bandwidth_gb_s, "bf16_dense_tflops": g.bf16_dense_tflops,
                         "pcie_gb_s": g.pcie_gb_s} for g in gpus]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from rich.table import Table

    console = _out_console()
    table = Table(title="built-in models (--model)")
    for name in ("model", "parameters", "layers", "KV per token", "max model len"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for m in models:
        table.add_row(m.name, f"{m.parameters / 1e9:.2f} B", str(m.num_hidden_layers),
                      f"{m.kv_bytes_per_token // 1024} KiB", f"{m.max_position_embeddings:,}")
    console.print(table)
    table = Table(title="built-in GPUs (--gpu)")
    for name in ("gpu", "memory", "bandwidth", "bf16 dense", "PCIe", "description"):
        table.add_column(name, justify="left" if name in ("gpu", "description") else "right")
    for g in gpus:
        table.add_row(g.name, f"{g.memory_gb:g} GB", f"{g.memory_bandwidth_gb_s:,.0f} GB/s",
                      f"{g.bf16_dense_tflops:,.0f} TFLOPS", f"{g.pcie_gb_s:g} GB/s", g.description)
    console.print(table)
