"""What a vLLM 0.8.5 server's log (`vllm serve ... > server.log 2>&1`) says about its run.

The lines read, as vLLM 0.8.5 writes them (each after the logger's "INFO 05-01 12:00:00 [file.py:N] "):
* `vLLM API server version 0.8.5` and `args: Namespace(..., max_loras=8, ...)`, the parsed command line
  (vllm/entrypoints/openai/api_server.py, run_server); later vLLMs print `non-default args: {...}`
  instead, which is read the same way;
* `Chunked prefill is enabled with max_num_batched_tokens=2048.` (the token budget in force when the
  flag was left to vLLM);
* `GPU KV cache size: 302,000 tokens` and `Maximum concurrency for 4,096 tokens per request: 73.73x`
  (vllm/v1/core/kv_cache_utils.py);
* `Model loading took 15.39 GiB and ... seconds` (the weights and the LoRA buffers);
* a start-up failure for lack of memory, in the words of the reference data's `status_detail`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from loratwin.errors import InputError
from loratwin.textfile import read_user_text

LOG_FILE = "a vLLM server log (vllm serve's stdout and stderr)"
_VERSION = re.compile(r"vLLM API server version (\S+)")
_ARGS = re.compile(r"(?:\bargs: Namespace\(|non-default args: \{)(.*)$", re.MULTILINE)
_BUDGET = re.compile(r"Chunked prefill is enabled with max_num_batched_tokens=(\d+)")
_KV = re.compile(r"GPU KV cache size: (\S+) tokens")
_CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
_LOADING = re.compile(r"Model loading took ([\d.]+) ?GiB")
_MODULE = re.compile(r"LoRAModulePath\(name='([^']*)', path='([^']*)'")
_VALUE = r"(None|True|False|-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|'[^']*'|\"[^\"]*\")"
# start-up failures for lack of memory (vLLM 0.8.5's messages), named as runs.csv's status_detail
FAILURES = (
    ("KV cache is needed, which is larger than the available KV cache memory", "kv_cache_below_one_max_model_len_request"),
    ("No available memory for the cache blocks", "no_memory_left_for_kv_cache"),
    ("CUDA out of memory", "cuda_oom"),
    ("OutOfMemoryError", "cuda_oom"),
)


@dataclass(frozen=True)
class ServerFacts:
    """A server's configuration and start-up measurements, from its log."""

    path: Path
    vllm_version: str | None
    model: str
    max_loras: int
    max_lora_rank: int
    max_cpu_loras: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    max_model_len: int | None
    lora_modules: tuple[tuple[str, str], ...]  # (name, path) in the order served
    kv_cache_tokens: int | None  # None: the server did not start
    max_concurrency: float | None
    model_load_gib: float | None
    failure: str | None  # a start-up failure for lack of memory, or None

    @property
    def served_adapters(self) -> int:
        return len(self.lora_modules)


def read_server_log(path: Path) -> ServerFacts:
    """The facts of a server log; an InputError naming the file and what is missing otherwise."""
    text = read_user_text(path, LOG_FILE)
    args_line = _last(_ARGS, text)
    if args_line is None:
        raise InputError(f"{path}: no 'args: Namespace(...)' line (vllm serve prints its arguments at start); "
                         f"expected {LOG_FILE} of vLLM 0.8.5")
    args = args_line.group(1)

    def arg(name: str, required: bool = True):
        match = re.search(rf"(?:^|[\s,({{]){name}=" + _VALUE, args) or re.search(rf"'{name}': " + _VALUE, args)
        try:
            value = ast.literal_eval(match.group(1)) if match else None
        except (ValueError, SyntaxError):
            value = match.group(1)  # left as typed: the conversion below names it
        if value is None and required:
            raise InputError(f"{path}: the server's arguments hold no {name} (--{name.replace('_', '-')}); the runs "
                             "table needs it: give the flag explicitly")
        return value

    if arg("enable_lora", required=False) is not True:
        raise InputError(f"{path}: the server ran without --enable-lora; expected a multi-LoRA run")
    modules = tuple(_MODULE.findall(args))
    if not modules:
        raise InputError(f"{path}: the server's arguments list no --lora-modules; expected the adapters it served")
    model = arg("model", required=False) or arg("model_tag")
    def whole(name: str, required: bool = True) -> int | None:
        value = arg(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{path}: the server's arguments: {name} must be a whole number >= 1, got {value!r}")
        return value

    def fraction(name: str) -> float:
        value = arg(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise InputError(f"{path}: the server's arguments: {name} must be a number in (0, 1], got {value!r}")
        return float(value)

    max_loras = whole("max_loras")
    kv = _last(_KV, text)
    concurrency = _last(_CONCURRENCY, text)
    budget = whole("max_num_batched_tokens", required=False)
    if budget is None:
        stated = _last(_BUDGET, text)
        if stated is None:
            raise InputError(f"{path}: neither the arguments nor a 'Chunked prefill is enabled with "
                             "max_num_batched_tokens=N' line give the token budget; give --max-num-batched-tokens")
        budget = int(stated.group(1))
    max_len = whole("max_model_len", required=False)
    if max_len is None and concurrency is not None:
        max_len = int(concurrency.group(1).replace(",", ""))
    loading = _last(_LOADING, text)
    version = _last(_VERSION, text)
    return ServerFacts(
        path=path,
        vllm_version=version.group(1) if version else None,
        model=str(model),
        max_loras=max_loras,
        max_lora_rank=whole("max_lora_rank"),
        max_cpu_loras=whole("max_cpu_loras", required=False) or max_loras,  # vLLM's default: max_loras
        max_num_seqs=whole("max_num_seqs"),
        max_num_batched_tokens=int(budget),
        gpu_memory_utilization=fraction("gpu_memory_utilization"),
        max_model_len=max_len,
        lora_modules=modules,
        kv_cache_tokens=_kv_tokens(path, kv.group(1)) if kv else None,
        max_concurrency=float(concurrency.group(2)) if concurrency else None,
        model_load_gib=float(loading.group(1)) if loading else None,
        failure=next((detail for words, detail in FAILURES if words in text), None) if kv is None else None,
    )


def _kv_tokens(path: Path, text: str) -> int:
    """The size on a 'GPU KV cache size: N tokens' line, checked by the profile's rule for KV sizes."""
    from pydantic import TypeAdapter, ValidationError

    from loratwin.profiles.kv_capacity import MAX_KV_TOKENS, KVTokens

    try:
        return TypeAdapter(KVTokens).validate_python(int(text.replace(",", "")))
    except (ValueError, ValidationError):
        raise InputError(f"{path}: 'GPU KV cache size: {text} tokens': expected a token count from 1 to "
                         f"{MAX_KV_TOKENS:,}") from None


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    """The last match (a log may hold a restarted server's lines: the last start counts)."""
    found = None
    for found in pattern.finditer(text):  # noqa: B007 - keep the last
        pass
    return found
