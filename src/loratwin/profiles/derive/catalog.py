"""What a derived profile starts from: a model's architecture and a GPU's datasheet figures.

Built-in models are Hugging Face `config.json` files (the fields vLLM reads to size a model) in
`data/models/`, named `org--name.json`; built-in GPUs are in `data/gpus.yaml`. Users give their own
as a `config.json` path and a GPU YAML file of the same fields.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loratwin.errors import InputError
from loratwin.textfile import read_user_text
from loratwin.yamlfile import parse_yaml

_DATA = "loratwin.profiles.derive.data"

# Decoder-only architectures whose layers are the Llama pattern (attention with grouped KV heads, a gated
# MLP of three projections, RMSNorm): the memory and step-time models are written for that shape.
# Qwen2 adds a bias to the q, k and v projections.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
_QKV_BIAS = ("Qwen2ForCausalLM",)
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}

Count = Annotated[int, Field(gt=0, le=1_000_000)]  # layers, heads, widths: far above any real model


class ModelArchitecture(BaseModel):
    """The fields of a model's `config.json` that decide its memory and compute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    architecture: str
    num_hidden_layers: Count
    hidden_size: Count
    num_attention_heads: Count
    num_key_value_heads: Count
    head_dim: Count
    intermediate_size: Count
    vocab_size: Annotated[int, Field(gt=0, le=10_000_000)]
    max_position_embeddings: Annotated[int, Field(gt=0, le=100_000_000)]
    tie_word_embeddings: bool
    dtype_bytes: Annotated[int, Field(gt=0, le=8)]
    qkv_bias: bool

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V one token holds in the cache, over all layers."""
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * self.dtype_bytes

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def parameters(self) -> int:
        """Parameters of the weights (embeddings, layers, final norm, LM head unless tied)."""
        h, layer = self.hidden_size, 0
        layer += h * (self.q_size + 2 * self.kv_size) + (self.q_size + 2 * self.kv_size if self.qkv_bias else 0)
        layer += self.q_size * h  # o_proj
        layer += 3 * h * self.intermediate_size  # gate, up, down
        layer += 2 * h  # the two RMSNorms
        embed = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return self.num_hidden_layers * layer + embed + head + h


class GpuSpec(BaseModel):
    """A GPU's datasheet figures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    memory_gb: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]
    total_mib: Annotated[float, Field(gt=0, le=100_000_000, allow_inf_nan=False)] | None = None
    memory_bandwidth_gb_s: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]
    bf16_dense_tflops: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]
    pcie_gb_s: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)] = 32.0
    datasheet: str

    @property
    def total_bytes(self) -> int:
        """The device memory CUDA reports; without a report, the datasheet's less the driver's usual ~0.6%."""
        if self.total_mib is not None:
            return int(self.total_mib * 2**20)
        return int(self.memory_gb * 2**30 * 0.994)


def _model_file_name(name: str) -> str:
    return name.replace("/", "--") + ".json"


def builtin_models() -> list[str]:
    """Hugging Face ids of the built-in models."""
    files = resources.files(_DATA).joinpath("models").iterdir()
    return sorted(p.name[: -len(".json")].replace("--", "/") for p in files if p.name.endswith(".json"))


def builtin_gpus() -> list[str]:
    return sorted(_gpu_table())


@functools.cache
def _gpu_table() -> dict[str, dict]:
    return parse_yaml(resources.files(_DATA).joinpath("gpus.yaml").read_text(), "gpus.yaml")


def _validation_message(source: str, exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        parts.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
    return f"{source}: " + "; ".join(parts)


def architecture_from_config(config: object, name: str, source: str) -> ModelArchitecture:
    """The architecture in a parsed `config.json`; a missing or wrong field names itself and `source`."""
    if not isinstance(config, dict):
        raise InputError(f"{source}: expected a JSON object of model config fields (a Hugging Face config.json)")
    problems: list[str] = []  # every mistake in the file, on one line
    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    if arch not in SUPPORTED_ARCHITECTURES:
        problems.append(f"architectures: {archs!r} is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    missing = [
        key
        for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")
        if key not in config
    ]
    if missing:
        problems.append(f"missing fields {', '.join(missing)}")
    dtype = config.get("torch_dtype", "bfloat16")
    if dtype not in DTYPE_BYTES:
        problems.append(f"torch_dtype: expected one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    heads = config.get("num_attention_heads")
    hidden = config.get("hidden_size")
    # head_dim is absent from older configs: it is then hidden_size / num_attention_heads
    derived_head_dim = "head_dim" not in config
    head_dim = (
        hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 else None
    ) if derived_head_dim else config["head_dim"]
    fields = {
        "name": name,
        "architecture": arch or "",
        "num_hidden_layers": config.get("num_hidden_layers"),
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": config.get("num_key_value_heads", heads),
        "head_dim": head_dim,
        "intermediate_size": config.get("intermediate_size"),
        "vocab_size": config.get("vocab_size"),
        "max_position_embeddings": config.get("max_position_embeddings", 4096),
        "tie_word_embeddings": config.get("tie_word_embeddings", False),
        "dtype_bytes": DTYPE_BYTES.get(dtype, 2),
        "qkv_bias": arch in _QKV_BIAS,
    }
    try:
        architecture = ModelArchitecture.model_validate(fields, strict=True)
    except ValidationError as exc:
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else "(top level)"
            if field in missing:
                continue  # already said
            message = e["msg"].removeprefix("Value error, ")
            if field == "head_dim" and derived_head_dim:
                field = "head_dim (not in the file: hidden_size / num_attention_heads)"
            problems.append(f"{field}: {message}")
        architecture = None
    if problems or architecture is None:
        raise InputError(f"{source}: " + "; ".join(problems))
    return architecture


def resolve_model(name_or_path: str | Path) -> ModelArchitecture:
    """A built-in model by Hugging Face id (any case), or a `config.json` by path."""
    name = str(name_or_path)
    by_lower = {m.lower(): m for m in builtin_models()}
    # also the id's last part ("Llama-3.1-8B-Instruct"), which is how the built-in profiles name models
    by_lower.update({m.split("/")[-1].lower(): m for m in builtin_models()})
    if name.lower() in by_lower:
        hf_id = by_lower[name.lower()]
        text = resources.files(_DATA).joinpath("models", _model_file_name(hf_id)).read_text()
        return architecture_from_config(json.loads(text), hf_id, _model_file_name(hf_id))
    path = Path(name)
    if path.suffix == ".json" or path.exists():
        if path.is_dir():
            path = path / "config.json"
        text = read_user_text(path, "a model config.json")
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
        return architecture_from_config(config, str(path), str(path))
    raise InputError(
        f"--model: unknown model {name!r}; built-in models: {', '.join(builtin_models())}, or give a config.json path"
    )


def resolve_gpu(name_or_path: str | Path) -> GpuSpec:
    """A built-in GPU by name (any case), or a GPU YAML file (the fields of `data/gpus.yaml`, one GPU) by path."""
    name = str(name_or_path)
    table = _gpu_table()
    if name.lower() in table:
        key = name.lower()
        return GpuSpec.model_validate({"name": key, **table[key]})
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        data = parse_yaml(read_user_text(path, "a GPU YAML file"), str(path))
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping of GPU fields ({', '.join(GpuSpec.model_fields)})")
        try:
            return GpuSpec.model_validate({"name": path.stem, **data})
        except ValidationError as exc:
            raise InputError(_validation_message(str(path), exc)) from None
    raise InputError(f"--gpu: unknown GPU {name!r}; built-in GPUs: {', '.join(builtin_gpus())}, or give a YAML file")
