"""The result file of vLLM 0.8.5's serving benchmark (`benchmarks/benchmark_serving.py --save-result`,
as `vllm bench serve` writes it too): its keys, read from real runs and written for simulated ones.

The keys, as vLLM 0.8.5 writes them (benchmark() and main() of benchmark_serving.py):
* set-up: date, backend, model_id, tokenizer_id, num_prompts, request_rate (req/s, or "inf"),
  burstiness, max_concurrency, and each `--metadata KEY=VALUE` as a string;
* totals: duration (s), completed (requests), total_input_tokens, total_output_tokens,
  request_throughput (req/s), "request_goodput:" (its key holds a colon), output_throughput and
  total_token_throughput (tok/s);
* per request, in sending order: input_lens and output_lens (tokens; 0 output for a failed request),
  ttfts (s), itls (a list of gaps in s per request), generated_texts, errors ("" when it succeeded);
* per metric m of --percentile-metrics (ttft, tpot, itl, e2el): mean_m_ms, median_m_ms, std_m_ms and
  pP_m_ms for each P of --metric-percentiles (P printed without ".0": p99_ttft_ms, p99.9_ttft_ms).
  TPOT per request is (latency - TTFT) / (output tokens - 1), over requests of more than one token.

`SUMMARY_COLUMNS` and `STAT_COLUMNS` map these keys to the runs table's columns, one place for both
directions: `import` reads real files through them and `simulate --bench-json` (`bench_doc_from_run`)
writes the same keys, in the same units, for a simulated run.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loratwin.budget import PROCESS_BYTES, Estimate, require
from loratwin.errors import InputError

if TYPE_CHECKING:
    from loratwin.twin.result import RunResult

BENCH_FILE = "a benchmark result JSON (benchmark_serving.py --save-result of vLLM 0.8.5)"
# key of the result file -> column of the runs table
SUMMARY_COLUMNS = {
    "duration": "duration_s",
    "completed": "completed",
    "total_input_tokens": "total_input_tokens",
    "total_output_tokens": "total_output_tokens",
    "request_throughput": "request_throughput_req_s",
    "output_throughput": "output_tok_s",
    "total_token_throughput": "total_tok_s",
}
METRICS = ("ttft", "tpot", "itl", "e2el")
# statistics the runs table holds, under the same names as in the result file
STAT_COLUMNS = tuple(f"{stat}_{m}_ms" for m in ("ttft", "tpot", "itl") for stat in ("mean", "median", "p99"))
PER_REQUEST = ("input_lens", "output_lens", "ttfts", "itls", "errors")
REQUIRED = ("model_id", "num_prompts", "request_rate", *SUMMARY_COLUMNS, "mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms")
# --metadata keys the plan's clients add and simulate --bench-json writes (values: strings; lists
# comma-separated): the run, the per-adapter rate levels and their adapter counts, the rank cycle, and
# the number of clients of the run (so that a missing result file is noticed).
META_RUN, META_RATES, META_COUNTS, META_RANKS, META_CLIENTS = (
    "loratwin_run", "loratwin_rate_values", "loratwin_rate_counts", "loratwin_rank_cycle", "loratwin_clients")
# Memory to parse a result file, per byte of it: 6.4 B measured (RSS growth, /proc/self/statm) for an
# 87 MB file of 20,000 requests with 200 inter-token gaps each; rounded up.
JSON_BYTES_PER_FILE_BYTE = 7
# The largest measurement a result file may hold: a day, in s (a time per request), in ms (a statistic)
# or as a count (tokens, requests). Beyond it is a mistake, and sums of such values overflow to inf.
MAX_SECONDS = 86_400.0
MAX_VALUE = 1e12


@dataclass(frozen=True)
class BenchResult:
    """One result file: its numbers, its metadata (strings) and, when saved, its per-request lists."""

    path: Path
    model_id: str
    num_prompts: int
    request_rate: float  # inf when all requests were sent at once
    values: dict[str, float]  # totals and statistics, by key
    metadata: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list] = field(default_factory=dict)  # PER_REQUEST keys present

    @property
    def has_lists(self) -> bool:
        return all(k in self.lists for k in ("input_lens", "output_lens", "ttfts", "itls"))


def metric_keys(metric: str, percentiles: tuple[float, ...]) -> list[str]:
    """The statistic keys vLLM writes for `metric` and the --metric-percentiles."""
    return [f"{s}_{metric}_ms" for s in ("mean", "median", "std")] + [f"p{_p_word(p)}_{metric}_ms" for p in percentiles]


def _p_word(p: float) -> str:
    return str(int(p)) if int(p) == p else str(p)


def read_bench_json(path: Path) -> BenchResult:
    """A result file, checked: an InputError naming the file and the key otherwise."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc}); expected {BENCH_FILE}") from None
    require(Estimate(PROCESS_BYTES + JSON_BYTES_PER_FILE_BYTE * size, 0.0, f"reading {path}"))
    try:
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}; "
                         f"expected {BENCH_FILE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc}); expected {BENCH_FILE}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object; expected {BENCH_FILE}")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise InputError(f"{path}: missing keys {', '.join(missing)}; expected {BENCH_FILE}")
    values = {}
    for key, value in doc.items():
        if key in SUMMARY_COLUMNS or any(key.endswith(f"_{m}_ms") for m in METRICS):
            values[key] = _number(path, key, value)
    rate = doc["request_rate"]
    request_rate = math.inf if rate == "inf" else _number(path, "request_rate", rate)
    num_prompts = _number(path, "num_prompts", doc["num_prompts"])
    if not (num_prompts >= 1 and num_prompts == int(num_prompts)):
        raise InputError(f"{path}: num_prompts must be a whole number >= 1, got {doc['num_prompts']!r}")
    lists = {k: doc[k] for k in PER_REQUEST if k in doc}
    for key, value in lists.items():
        if not isinstance(value, list) or len(value) != len(lists["input_lens" if "input_lens" in lists else key]):
            raise InputError(f"{path}: {key} must be a list with one entry per request, as input_lens")
        if key in ("input_lens", "output_lens"):
            _whole_numbers(path, key, value)
        elif key == "ttfts":
            _seconds(path, key, value)
        elif key == "itls":
            for i, gaps in enumerate(value):
                if not isinstance(gaps, list):
                    raise InputError(f"{path}: itls[{i}] must be a list of inter-token gaps in s, got {gaps!r}")
                _seconds(path, f"itls[{i}]", gaps)
    metadata = {k: v for k, v in doc.items() if isinstance(v, str) and k.startswith("loratwin_")}
    return BenchResult(path, str(doc["model_id"]), int(num_prompts), request_rate, values, metadata, lists)


def _number(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= MAX_VALUE):
        raise InputError(f"{path}: {key} must be a number from 0 to {MAX_VALUE:g}, got {value!r}")
    return float(value)


def _seconds(path: Path, key: str, values: list) -> None:
    """Times in s: numbers from 0 to a day, named by the key and the request's index otherwise."""
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= MAX_SECONDS):
            raise InputError(f"{path}: {key}[{i}] must be a time in s from 0 to {MAX_SECONDS:g}, got {value!r}")


def _whole_numbers(path: Path, key: str, values: list) -> None:
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value <= MAX_VALUE):
            raise InputError(f"{path}: {key}[{i}] must be a whole number of tokens from 0 to {MAX_VALUE:g}, "
                             f"got {value!r}")


# --- simulated runs ---------------------------------------------------------------------------------

SIMULATED_PERCENTILES = (50.0, 90.0, 99.0)
UNFINISHED = "not finished in the simulated window"


def bench_doc_from_run(result: RunResult, model_id: str) -> dict[str, Any]:
    """A simulated run as a result file of vLLM 0.8.5's benchmark, key for key and unit for unit.

    A request that did not finish inside the simulated window counts as a failed one (output length 0,
    TTFT 0, its error says so): the real client waits for every request instead, so compare runs whose
    requests finish. Left out, as the twin has no such data: generated_texts; per-request itls (the twin
    pools inter-token gaps), hence std_itl_ms and p90_itl_ms. `date` is not a time, so that the same
    inputs give the same file. `loratwin_*` keys carry the layout (as the plan's clients' --metadata do)."""
    req, s = result.requests, result.summary
    completed = np.asarray(req["completed"], bool)
    prompt = np.asarray(req["prompt_tokens"], np.int64)
    output = np.where(completed, np.asarray(req["output_tokens"], np.int64), 0)
    ttft_ms = np.asarray(req["ttft_ms"], np.float64)
    first, finish, sent = (np.asarray(req[k], np.float64) for k in ("first_token_s", "finish_s", "sent_s"))
    duration = float(result.config["duration_s"])
    levels: dict[float, int] = {}
    ranks: dict[int, int] = {}
    for a in result.adapters:
        levels[a["rate_req_s"]] = levels.get(a["rate_req_s"], 0) + 1
        ranks[a["rank"]] = ranks.get(a["rank"], 0) + 1
    doc: dict[str, Any] = {
        "date": "simulated",
        "backend": "loratwin",
        "model_id": model_id,
        "tokenizer_id": model_id,
        "num_prompts": int(prompt.size),
        "loratwin_profile": str(result.config["profile"]),
        "loratwin_seed": str(result.config["seed"]),
        META_RATES: ",".join(f"{r:g}" for r in sorted(levels)),
        META_COUNTS: ",".join(str(levels[r]) for r in sorted(levels)),
        META_RANKS: ",".join(map(str, rank_cycle(ranks))),
        "request_rate": float(result.config["workload"]["aggregate_rate_req_s"]),
        "burstiness": 1.0,
        "max_concurrency": None,
        "duration": duration,
        "completed": int(completed.sum()),
        "total_input_tokens": int(prompt[completed].sum()),
        "total_output_tokens": int(output.sum()),
        "request_throughput": int(completed.sum()) / duration,
        "request_goodput:": None,
        "output_throughput": int(output.sum()) / duration,
        "total_token_throughput": int(prompt[completed].sum() + output.sum()) / duration,
        "input_lens": prompt.tolist(),
        "output_lens": output.tolist(),
        "ttfts": np.where(completed, ttft_ms / 1000, 0.0).tolist(),
        "errors": np.where(completed, "", UNFINISHED).tolist(),
    }
    multi = completed & (output > 1)
    samples = {
        "ttft": ttft_ms[completed],
        "tpot": (finish[multi] - first[multi]) * 1000 / (output[multi] - 1),
        "e2el": (finish[completed] - sent[completed]) * 1000,
    }
    for metric in ("ttft", "tpot"):
        doc.update(_stats(metric, samples[metric]))
    doc.update({"mean_itl_ms": s["mean_itl_ms"], "median_itl_ms": s["p50_itl_ms"], "p50_itl_ms": s["p50_itl_ms"],
                "p99_itl_ms": s["p99_itl_ms"]})
    doc.update(_stats("e2el", samples["e2el"]))
    return doc


def _stats(metric: str, values: np.ndarray) -> dict[str, float]:
    """vLLM's statistics of a metric (ms); of [0] when there are no values, as vLLM does (`np.mean(x or 0)`)."""
    x = values if values.size else np.zeros(1)
    keys = metric_keys(metric, SIMULATED_PERCENTILES)
    numbers = [x.mean(), np.median(x), x.std(), *(np.percentile(x, p) for p in SIMULATED_PERCENTILES)]
    return {k: float(v) for k, v in zip(keys, numbers, strict=True)}


def rank_cycle(counts: dict[int, int]) -> list[int]:
    """The shortest rank cycle with these proportions ({8: 6, 32: 3} -> [8, 8, 32])."""
    step = math.gcd(*counts.values())
    return [rank for rank in sorted(counts) for _ in range(counts[rank] // step)]
