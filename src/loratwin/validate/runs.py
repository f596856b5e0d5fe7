"""Real vLLM runs in the reference format (`runs.csv`) and the workload each one ran."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from loratwin.errors import InputError
from loratwin.profiles import Profile
from loratwin.textfile import read_user_text
from loratwin.twin.config import ServerConfig
from loratwin.workload import AdapterSpec, RequestTable, WorkloadSpec, generate_requests

REQUIRED_COLUMNS = (
    "run_id", "source_set", "model", "max_loras", "served_adapters", "max_lora_rank",
    "adapter_rank_cycle", "rate_values", "rate_counts", "status",
)
# Statuses that tell whether the server started: these runs count for start-failure agreement.
# (Port clashes and engine-init crashes say nothing about memory.)
STARTED = frozenset({"ok", "slurm_timeout", "slurm_cancelled", "unknown"})
FAILED_TO_START = frozenset({"oom_at_start"})

# The latency statistics a replay compares with the measurement, named as the runs file's columns:
# the one list that ReplayResult, validate's runs.csv columns and its error tables are built from.
LATENCY_METRICS = (
    "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_tpot_ms",
)
# The latency regime: runs whose measured mean TTFT is at most this (ms), i.e. not swamped by queueing.
LATENCY_REGIME_MAX_TTFT_MS = 10_000.0

MEASURED_FLOATS = (
    "total_tok_s", "input_tok_s", "output_tok_s", *LATENCY_METRICS,
    "throughput_over_offered", "approx_offered_tok_s", "sent_offered_tok_s", "ttft_with_unfinished_ms",
    "max_waiting", "mean_running", "mean_waiting", "pool_mean_input_tokens", "pool_mean_output_tokens",
    "completed", "total_output_tokens", "paper_dt_total_tok_s", "paper_dt_itl_ms", "paper_dt_ttft_ms",
    # the server's "GPU KV cache size" at start, where the runs file has it (`loratwin profile import`)
    "kv_cache_tokens",
    # the benchmark window asked for (s); the twin replays the run over it (default an hour)
    "configured_time_s", "duration_s",
)
# A benchmark window beyond a day is a mistake in the file (the reference runs took an hour).
MAX_WINDOW_S = 86_400.0


@dataclass(frozen=True)
class RealRun:
    """One real one-hour run: its configuration and what was measured (None where not available)."""

    run_id: str
    source_set: str
    model: str
    status: str
    max_loras: int
    served_adapters: int
    max_lora_rank: int
    rank_cycle: tuple[int, ...]
    rate_values: tuple[float, ...]
    rate_counts: tuple[int, ...]
    measured: dict[str, float | None] = field(default_factory=dict, compare=False)
    starved: bool | None = None  # the paper's rule as applied in the file (starved_approx)

    @property
    def has_metrics(self) -> bool:
        return self.status == "ok" and self.measured.get("total_tok_s") is not None

    @property
    def start_known(self) -> bool:
        return self.status in STARTED or self.status in FAILED_TO_START

    @property
    def started(self) -> bool:
        return self.status in STARTED


def _parse_row(row: dict[str, str], line: int, source: str) -> RealRun:
    def fail(message: str) -> InputError:
        return InputError(f"{source} line {line}: {message}")

    def text(name: str) -> str:
        value = (row.get(name) or "").strip()
        if not value:
            raise fail(f"column {name!r} is empty")
        return value

    def numbers(name: str, kind: type, least: float) -> tuple:
        expected = f"space-separated {'integers' if kind is int else 'numbers'} >= {least:g}"
        try:
            values = tuple(kind(x) for x in text(name).split())
        except ValueError:
            raise fail(f"{name} must be {expected}, got {row[name]!r}") from None
        if not all(math.isfinite(v) and v >= least for v in values):
            raise fail(f"{name} must be {expected}, got {row[name]!r}")
        return values

    def integer(name: str) -> int:
        try:
            value = int(text(name))
        except ValueError:
            raise fail(f"{name} must be an integer >= 1, got {row[name]!r}") from None
        if value < 1:
            raise fail(f"{name} must be an integer >= 1, got {row[name]!r}")
        return value

    measured: dict[str, float | None] = {}
    for name in MEASURED_FLOATS:
        value = (row.get(name) or "").strip()
        try:
            measured[name] = float(value) if value else None
        except ValueError:
            raise fail(f"{name} must be a number, got {value!r}") from None
        if measured[name] is not None and not math.isfinite(measured[name]):
            raise fail(f"{name} must be a finite number, got {value!r}")
    window = measured["configured_time_s"]
    if window is not None and not 0 < window <= MAX_WINDOW_S:
        raise fail(f"configured_time_s must be a number of seconds > 0 and <= {MAX_WINDOW_S:g}, got {window:g}")
    rates, counts = numbers("rate_values", float, 0), numbers("rate_counts", int, 0)
    if len(rates) != len(counts):
        raise fail("rate_values and rate_counts must have the same length")
    starved_text = (row.get("starved_approx") or "").strip()
    if starved_text not in ("", "0", "1"):
        raise fail(f"starved_approx must be 0, 1 or empty, got {starved_text!r}")
    run = RealRun(
        run_id=text("run_id"),
        source_set=text("source_set"),
        model=text("model"),
        status=text("status"),
        max_loras=integer("max_loras"),
        served_adapters=integer("served_adapters"),
        max_lora_rank=integer("max_lora_rank"),
        rank_cycle=numbers("adapter_rank_cycle", int, 1),
        rate_values=rates,
        rate_counts=counts,
        measured=measured,
        starved=bool(int(starved_text)) if starved_text else None,
    )
    if run.start_known:
        # Rows that are replayed must describe a server the twin can start: say so now, by line,
        # rather than from a worker process halfway through the replay.
        if sum(counts) != run.served_adapters:
            raise fail(f"rate_counts add up to {sum(counts)}, not served_adapters {run.served_adapters}")
        if run.max_loras > run.served_adapters:
            raise fail(f"max_loras {run.max_loras} is above served_adapters {run.served_adapters}")
        if max(run.rank_cycle) > run.max_lora_rank:
            raise fail(f"adapter_rank_cycle holds rank {max(run.rank_cycle)}, above max_lora_rank {run.max_lora_rank}")
    return run


# What the error messages call the file.
RUNS_FILE = "a runs file in the reference format (runs.csv, one row per real run)"
# Columns listed by name in a message about a short row; the rest are counted.
_SHOWN_COLUMNS = 8


def _check_width(row: list[str], header: list[str], line: int, source: str) -> None:
    if len(row) < len(header):
        missing = header[len(row):]
        shown = ", ".join(missing[:_SHOWN_COLUMNS])
        if len(missing) > _SHOWN_COLUMNS:
            shown += f" and {len(missing) - _SHOWN_COLUMNS} more"
        raise InputError(
            f"{source} line {line}: missing columns {shown} (the row has {len(row)} fields, the header {len(header)})"
        )
    if len(row) > len(header):
        raise InputError(
            f"{source} line {line}: {len(row)} fields, more than the header's {len(header)} "
            "(a value holding a comma must be quoted)"
        )


def load_runs(path: str | Path, required: Sequence[str] = ()) -> list[RealRun]:
    """Read a runs file; errors name the file, line and column. A row with fewer or more fields
    than the header is an error, not a row with blanks: a truncated file must not pass as runs
    without measurements. `required`: columns needed beyond the configuration's (e.g. the
    measurements a fit needs)."""
    path = Path(path)
    source = str(path)
    reader = csv.reader(io.StringIO(read_user_text(path, RUNS_FILE), newline=""))
    try:
        header = [name.strip() for name in next(reader, None) or []]
        if not header:
            raise InputError(f"{source}: the file is empty; expected {RUNS_FILE}")
        missing = [c for c in (*REQUIRED_COLUMNS, *required) if c not in header]
        if missing:
            raise InputError(f"{source}: missing columns {', '.join(missing)}; expected {RUNS_FILE}")
        twice = sorted({name for name in header if header.count(name) > 1})
        if twice:
            raise InputError(f"{source} line 1: columns named twice: {', '.join(twice)}")
        runs = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            _check_width(row, header, reader.line_num, source)
            runs.append(_parse_row(dict(zip(header, row, strict=True)), reader.line_num, source))
    except csv.Error as err:
        raise InputError(f"{source} line {reader.line_num}: unreadable CSV ({err})") from None
    return runs


def run_workload(run: RealRun, seed: int) -> WorkloadSpec:
    """The workload of a run: its rate levels spread over the adapters as the reference client did
    (round-robin, then shuffled: which adapter got which rate was not recorded, so `seed` decides),
    ranks cycling through the server's adapter list, Poisson arrivals, ShareGPT lengths."""
    rates = np.repeat(np.asarray(run.rate_values, dtype=np.float64), run.rate_counts)
    if len(rates) != run.served_adapters:
        raise InputError(
            f"run {run.run_id}: rate_counts add up to {len(rates)}, not served_adapters {run.served_adapters}"
        )
    np.random.default_rng(seed).shuffle(rates)
    adapters = tuple(
        AdapterSpec(id=f"lora-{i}", rank=run.rank_cycle[i % len(run.rank_cycle)], rate_req_s=float(rates[i]))
        for i in range(run.served_adapters)
    )
    return WorkloadSpec(adapters=adapters)


def run_requests(run: RealRun, workload: WorkloadSpec, profile: Profile, duration_s: float, seed: int) -> RequestTable:
    """The run's requests: Poisson arrivals and ShareGPT lengths, rescaled so that the mean prompt
    and output lengths are those of the prompt pool the run's client drew (logged with the run)."""
    requests = generate_requests(workload, duration_s, seed, model_name=profile.tokenizer or profile.name)
    prompt, output = requests.prompt_tokens, requests.output_tokens
    pool_prompt = run.measured.get("pool_mean_input_tokens")
    pool_output = run.measured.get("pool_mean_output_tokens")
    if len(prompt) and pool_prompt and pool_output:
        prompt = np.maximum(1, np.rint(prompt * (pool_prompt / prompt.mean()))).astype(np.int32)
        output = np.maximum(1, np.rint(output * (pool_output / output.mean()))).astype(np.int32)
    return RequestTable(arrival_s=requests.arrival_s, adapter=requests.adapter, prompt_tokens=prompt, output_tokens=output)


def run_server(run: RealRun, client_max_waiting: int | None, **flags: int) -> ServerConfig:
    """The server flags of a run (`--max-cpu-loras` = served adapters, as in every reference run);
    `flags`: other ServerConfig fields (max_num_seqs, max_num_batched_tokens), else vLLM's defaults
    as the reference runs had them."""
    return ServerConfig(
        max_loras=run.max_loras,
        max_cpu_loras=run.served_adapters,
        max_lora_rank=run.max_lora_rank,
        client_max_waiting=client_max_waiting,
        **flags,
    )
