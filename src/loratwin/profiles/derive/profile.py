"""A whole profile derived from a model's architecture and a GPU's datasheet, without measurements.

Step time: the roofline (roofline.py); adapter loads: adapter_loads.py; KV capacity: the memory model
(kv.py, `kv_model_for`); scheduler overhead and the share of requested output tokens generated: taken
over from the fit of the roofline factors (data/roofline.yaml: CPU-side and workload-side numbers, not
GPU ones); placement constants: their defaults (fitted on the twin). Such a profile says it is derived
and not validated on its GPU: in `fitted`, `source` and the header of the YAML file it is written to.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from loratwin.errors import InputError
from loratwin.profiles.derive.adapter_loads import adapter_load_model
from loratwin.profiles.derive.catalog import GpuSpec, ModelArchitecture
from loratwin.profiles.derive.kv import kv_model_for
from loratwin.profiles.derive.memory import MemoryFlags
from loratwin.profiles.derive.roofline import RooflineFit, load_roofline_fit, step_time_model
from loratwin.profiles.model import GenerationModel, KVCapacityModel, PlacementModel, Profile, TailModel


def serve_flags(
    arch: ModelArchitecture,
    *,
    gpu_memory_utilization: float = 0.9,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 2048,
    max_model_len: int | None = None,
) -> MemoryFlags:
    """The memory model's flags from `vllm serve`'s (max_model_len None: the model's
    max_position_embeddings, as vLLM takes it); a value vLLM would refuse is an InputError naming its flag."""
    try:
        flags = MemoryFlags(gpu_memory_utilization=gpu_memory_utilization, max_num_seqs=max_num_seqs,
                            max_num_batched_tokens=max_num_batched_tokens, max_model_len=max_model_len)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}, got {error['input']!r}") from None
    return checked_flags(arch, flags)


def checked_flags(arch: ModelArchitecture, flags: MemoryFlags) -> MemoryFlags:
    """`flags` with max_model_len filled in, after vLLM's checks between flags and against the model."""
    if flags.max_num_batched_tokens < flags.max_num_seqs:
        raise InputError(f"--max-num-batched-tokens {flags.max_num_batched_tokens}: vLLM needs at least "
                         f"--max-num-seqs ({flags.max_num_seqs}) tokens per step")
    length = arch.max_position_embeddings if flags.max_model_len is None else flags.max_model_len
    if length > arch.max_position_embeddings:
        raise InputError(f"--max-model-len {length}: above the model's max_position_embeddings "
                         f"({arch.max_position_embeddings:,}), which vLLM refuses")
    return flags.model_copy(update={"max_model_len": length})


def profile_name(arch: ModelArchitecture, gpu: GpuSpec) -> str:
    """`<model>_<gpu>-derived`: the model's last name part (a config.json path: its folder), lower case."""
    path = Path(arch.name)
    short = path.parent.name if path.suffix == ".json" and path.parent.name else path.name.removesuffix(".json")
    return f"{short.lower() or 'model'}_{gpu.name}-derived"


def tokenizer_table_for(model_id: str, tables: list[str]) -> str | None:
    """The request-length table of `model_id` among `tables` (names like llama-3.1-8b-instruct), matched
    on letters and digits of the id's last part; None when the model has none."""
    def key(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    wanted = key(model_id.split("/")[-1])
    return next((t for t in tables if key(t) == wanted), None)


def _check_it_starts(arch: ModelArchitecture, gpu: GpuSpec, flags: MemoryFlags, kv: KVCapacityModel) -> None:
    """Refuse a model and GPU on which vLLM would not start even with one adapter slot of the smallest
    rank: no LoRA setting can help then, so a profile of it would only mislead the commands."""
    least = kv.breakdown(1, 8)
    if least is None or least.starts:
        return
    gib = 2**30
    hint = (f"; lower --max-model-len (now {flags.max_model_len:,}) or raise --gpu-memory-utilization"
            if least.failure == "kv_cache_below_one_max_model_len_request"
            else "; a GPU with more memory, or a smaller model, is needed")
    raise InputError(
        f"--model {arch.name} --gpu {gpu.name}: vLLM would not start even with --max-loras 1 --max-lora-rank 8: "
        f"{least.reason} (weights {least.weights / gib:.1f} GiB of {least.budget / gib:.1f} GiB usable at "
        f"gpu_memory_utilization {flags.gpu_memory_utilization:g}){hint}"
    )


def derive_profile(
    arch: ModelArchitecture,
    gpu: GpuSpec,
    flags: MemoryFlags | None = None,
    *,
    tokenizer: str | None = None,
    kv: KVCapacityModel | None = None,
    fit: RooflineFit | None = None,
) -> Profile:
    """The profile of `arch` served on `gpu` with `flags` (default: the memory model's, the reference
    servers' flags; see `serve_flags` for `vllm serve`'s own). `tokenizer`: the name of its request-length
    table, if it has one (see `tokenizer_table_for`). `kv`: a KV capacity model to use instead of the
    memory model's; `fit`: roofline factors instead of the shipped ones."""
    flags = checked_flags(arch, flags or MemoryFlags())
    if kv is None:
        kv = kv_model_for(arch, gpu, flags)
        _check_it_starts(arch, gpu, flags, kv)
    fit = fit or load_roofline_fit()
    fitted_on = f"{fit.fitted_on.get('model')} on {fit.fitted_on.get('gpu')}"
    return Profile(
        name=profile_name(arch, gpu),
        model=arch.name,
        gpu=f"{gpu.description} (datasheet figures, gpu_memory_utilization {flags.gpu_memory_utilization:g})",
        engine=f"vLLM 0.8.5, V1 engine, prefix caching off, max_num_batched_tokens {flags.max_num_batched_tokens}",
        source=(f"DERIVED from the model's architecture and the GPU's datasheet by a roofline whose efficiency "
                f"factors were fitted on {fitted_on}; not validated on this GPU"),
        fitted="derived",
        tokenizer=tokenizer,
        step_time=step_time_model(arch, gpu, fit.step_time),
        scheduler_overhead=fit.scheduler_overhead,
        adapter_load=adapter_load_model(arch, gpu, fit.adapter_load),
        kv=kv,
        generation=GenerationModel(output_tokens_ratio=fit.output_tokens_ratio),
        placement=PlacementModel(),
        tails=borrowed_tails(fit),
    )


def borrowed_tails(fit: RooflineFit) -> TailModel:
    """The latency-tail constants of the built-in profile of the model the roofline was fitted on.
    They are the API server's (/metrics scrapes, each adapter's first-use stall), which depend on
    vLLM's server and the host more than on the model's arithmetic; without them a derived profile's
    latency percentiles would be the engine's alone (p99 TTFT about a quarter of the real one on the
    reference runs). None fits: no tails."""
    from loratwin.profiles.load import builtin_profiles, load_profile

    model_id = fit.fitted_on.get("model")
    for name in builtin_profiles():
        source = load_profile(name)
        if source.model == model_id:
            return source.tails.model_copy(update={"provenance": (
                f"borrowed from the built-in profile {name} (scripts/fit_tails.py on its dt_modelling runs); "
                "not measured for this model or GPU")})
    return TailModel()


def derived_profile_yaml(profile: Profile, command: str) -> str:
    """The profile as YAML, under a header saying it is derived, not validated, and what wrote it."""
    header = (
        "# DERIVED profile: computed from the model's architecture and the GPU's datasheet figures, without\n"
        "# measurements on this GPU. It is NOT validated on this GPU: measure and fit one (loratwin profile plan,\n"
        "# import, fit) before trusting its numbers.\n"
        f"# Written by: {command}\n"
    )
    return header + yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False)
