"""Run the twin: resolve the configuration, feed the engine, wrap its output in a RunResult."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np

from loratwin import budget
from loratwin.errors import InputError
from loratwin.profiles import Profile, load_profile
from loratwin.twin import engine
from loratwin.twin.config import ResolvedServer, ServerConfig, resolve_server
from loratwin.twin.result import RunResult, build_result
from loratwin.workload import RequestTable, ShareGPTLengths, WorkloadSpec, generate_requests
from loratwin.workload.describe import expected_mean_rates
from loratwin.workload.length_tables import resolve_table
from loratwin.workload.size import unpredictable_periods
from loratwin.workload.trace import trace_window_s

# The reference runs' window: an hour.
DEFAULT_DURATION_S = 3600.0
NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
DEFAULT_SAMPLE_INTERVAL_S = 2.0


def _lengths_name(workload: WorkloadSpec, profile: Profile, replayed: bool) -> str:
    if replayed:
        return "replayed from the trace"
    if isinstance(workload.lengths, ShareGPTLengths):
        return f"ShareGPT, {resolve_table(workload.lengths.table, profile.tokenizer or profile.name)} tokenizer"
    return workload.lengths.name


def _realized_outputs(requested: np.ndarray, profile: Profile) -> np.ndarray:
    """Output tokens actually generated: the model stops early on average by the profile's ratio."""
    ratio = profile.generation.output_tokens_ratio
    if ratio == 1.0:
        return requested
    return np.maximum(1, np.rint(requested * ratio)).astype(requested.dtype)


def _check_requests(requests: RequestTable, server: ResolvedServer) -> None:
    """Refuse requests the engine could never finish, and unordered arrivals."""
    if len(requests) == 0:
        return
    if np.any(np.diff(requests.arrival_s) < 0):
        first = int(np.argmax(np.diff(requests.arrival_s) < 0)) + 1
        raise InputError(f"request {first}: arrivals must be sorted by time")
    # a request holds KV for all its tokens but the last; one block is vLLM's null block
    kv_tokens = requests.prompt_tokens.astype(np.int64) + requests.output_tokens - 1
    blocks = -(-kv_tokens // server.block_size)
    usable = server.num_blocks - 1
    if blocks.max() > usable:
        worst = int(np.argmax(blocks))
        raise InputError(
            f"request {worst} ({requests.prompt_tokens[worst]} prompt + {requests.output_tokens[worst]} "
            f"output tokens) needs {blocks[worst]} KV blocks, more than the {usable} the server has"
        )


# The engine counts time in int64 nanoseconds. A window, and a window plus the longest step a
# configuration can take, must stay below this (2^62 ns, 146 years: a margin for sums of times).
CLOCK_LIMIT_NS = 2**62


def _check_clock(duration_s: float, window_from: str | None = None) -> None:
    if not duration_s * NS_PER_S < CLOCK_LIMIT_NS:  # also refuses inf and nan
        clock = f"the twin's clock ({CLOCK_LIMIT_NS / NS_PER_S:.3g} s: it counts nanoseconds in 64 bits)"
        if window_from is None or window_from == "--duration":
            raise InputError(f"--duration {duration_s:g} s is beyond {clock}")
        raise InputError(f"the window, {duration_s:g} s ({window_from}), is beyond {clock}; --duration sets a shorter one")


def _check_step_range(profile: Profile, server: ResolvedServer, prompt_tokens: np.ndarray, duration_ns: int) -> None:
    """Refuse a configuration whose longest possible step overflows the engine's nanosecond clock
    (it would wrap to a step of no time: a server that looks infinitely fast). The profile bounds each
    term; what one step multiplies them by (sequences, tokens, adapters, waiting requests) is bounded
    by the configuration and the requests in the window, so the worst step is the formula at those bounds."""
    n = len(prompt_tokens)
    running = min(server.max_num_seqs, n)
    prefill = min(server.max_num_batched_tokens, int(prompt_tokens.sum(dtype=np.int64)))
    adapters = min(server.max_loras, running)
    # the formula is linear in running and waiting (scheduler slopes may be negative): try both ends
    run_at, wait_at = np.meshgrid([1.0, float(max(running, 1))], [0.0, float(n)])
    step_ms = profile.step_ms(
        run_at, float(prefill), float(server.kv_cache_tokens), np.where(run_at > 1, adapters, min(adapters, 1)),
        server.max_loras, server.max_lora_rank, waiting=wait_at, max_cpu_loras=server.max_cpu_loras,
    )
    loads = profile.adapter_load
    tables = [table for by_rank in (loads.cpu_to_gpu_ms, loads.disk_to_cpu_ms) for table in by_rank.values()]
    # beyond the measured ranks a load grows with the adapter's rank (AdapterLoadModel)
    rank_scale = max(1.0, server.max_lora_rank / min(min(table) for table in tables))
    worst_load_ms = server.max_loras * rank_scale * max(max(table.values()) for table in tables)
    worst_ms = float(np.max(step_ms)) + worst_load_ms
    if not worst_ms * NS_PER_MS + duration_ns < CLOCK_LIMIT_NS:
        raise InputError(
            f"profile {profile.name}: a step at this configuration could last {worst_ms:.3g} ms ({running} sequences, "
            f"{prefill} prompt tokens, {server.kv_cache_tokens} cached tokens, {n} waiting), beyond the twin's "
            "nanosecond clock; check the profile's step_time terms (they are in ms per sequence, token, adapter)"
        )


def _most_steps(profile: Profile, duration_s: float) -> float:
    """The shortest possible step bounds the number of steps in a window."""
    st = profile.step_time
    min_step_ms = st.base_ms * min(1.0, st.lora_factor_base + st.lora_factor_per_adapter)
    return duration_s * 1000 / max(min_step_ms, 1e-3) * 1.05


def _check_size(
    workload: WorkloadSpec, profile: Profile, duration_s: float, sample_interval_s: float,
    requests: RequestTable | None, window_from: str | None = None, engine: str = "fast",
) -> None:
    """Refuse a run too large for the memory limit before its requests are drawn: its adapters,
    the requests its arrival processes are expected to send (schedules and drift included), the
    periods of unpredictable arrivals, the engine steps (at most one per token asked for, and one
    per shortest step), the samples and the client's /metrics scrapes. A refusal names what
    dominates (`window_from`: where the window comes from, in words)."""
    if not math.isfinite(duration_s):
        return  # refused with its flag when the requests are drawn
    samples = duration_s / sample_interval_s + 2
    adapters = len(workload.adapters)
    periods = unpredictable_periods(workload, duration_s)[0] if requests is None else 0.0
    # what is known without arrays first: the expected rates take memory in proportion to the periods
    tails = profile.tails
    scrapes = duration_s / tails.metrics_poll_interval_s if tails.scrape_on else 0.0
    words = {"sample_interval_s": sample_interval_s, "window_from": window_from, "engine": engine, "scrapes": scrapes}
    budget.require(budget.simulation_estimate(adapters, None, duration_s, samples=samples, periods=periods, **words))
    if requests is None:
        expected = float(expected_mean_rates(workload, duration_s).sum()) * duration_s
        n_requests = budget.requests_bound(expected)
        lengths = workload.lengths
        if isinstance(lengths, ShareGPTLengths):
            tokens = sum(lengths.means(profile.tokenizer or profile.name))
        else:
            tokens = lengths.mean_prompt_tokens + lengths.mean_output_tokens
    else:
        n_requests = len(requests)
        tokens = float(requests.prompt_tokens.mean() + requests.output_tokens.mean()) if len(requests) else 0.0
    steps = min(_most_steps(profile, duration_s), n_requests * (tokens + 2))
    budget.require(budget.simulation_estimate(adapters, n_requests, duration_s, steps=steps, samples=samples,
                                              periods=periods, **words))


@contextlib.contextmanager
def _interrupt_after_engine():
    """Hold Ctrl-C while the compiled engine runs and raise it when it returns: a SIGINT handled
    inside numba's code leaves an exception pending in compiled code (a SystemError, or a crash).
    Engine calls last seconds at most, so the interrupt comes a moment late but cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def log_caps(profile: Profile, duration_s: float, n_requests: int, max_num_seqs: int) -> dict[int, int]:
    """The engine's first log capacities, by the overflow code of each log (grown when one fills)."""
    step_cap = int(min(4_000_000, _most_steps(profile, duration_s))) + 1024
    batch = min(max_num_seqs, n_requests)
    return {
        engine.OVERFLOW_STEPS: step_cap,
        engine.OVERFLOW_SEGMENTS: n_requests + n_requests // 4 + 2 * batch + 1024,
        engine.OVERFLOW_GAPS: n_requests // 4 + batch + 1024,
        engine.OVERFLOW_PREEMPT_STACK: n_requests // 4 + batch + 1024,
    }


def arrival_times_ns(arrival_s: np.ndarray, duration_s: float) -> np.ndarray:
    """Arrivals on the engine's clock; those past the window are cut to just past it first (in ns
    they could overflow int64)."""
    return np.round(np.minimum(arrival_s, duration_s + 1.0) * NS_PER_S).astype(np.int64)


def _run_engine(
    inputs: engine.EngineInputs, profile: Profile, duration_s: float, n_requests: int, max_num_seqs: int
) -> engine.EngineOutput:
    """Run the compiled engine with log capacities sized from the run, growing them if a log fills
    up. The one place the inputs are unpacked for it."""
    caps = log_caps(profile, duration_s, n_requests, max_num_seqs)
    while True:
        with _interrupt_after_engine():
            out = engine.EngineOutput(*engine.run_engine(*inputs, *caps.values()))
        overflow = int(out.counters[engine.CNT_OVERFLOW])
        if overflow == 0:
            return out
        caps[overflow] *= 2


@dataclass(frozen=True)
class PreparedRun:
    """A run checked and turned into engine inputs, with what `finish_run` needs to build its result."""

    inputs: engine.EngineInputs
    workload: WorkloadSpec
    requests: RequestTable  # the requests in the window, outputs as the model generates them
    requested_output_tokens: np.ndarray  # what they asked for (the offered load)
    profile: Profile
    server: ResolvedServer
    duration_s: float
    seed: int
    lengths_name: str


def simulate(
    workload: WorkloadSpec,
    server: ServerConfig,
    profile: Profile | str,
    *,
    duration_s: float | None = None,
    seed: int = 0,
    requests: RequestTable | None = None,
    outputs_requested: bool | None = None,
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
    starvation_threshold: float = 0.1,
    engine_mode: Literal["fast", "reference"] = "fast",
    window_from: str | None = None,
    ranks_from: str = "the workload",
) -> RunResult:
    """Simulate one vLLM replica serving `workload` for `duration_s` seconds (default: an hour, as
    the reference runs; for replayed `requests`, the trace's own window, `trace_window_s`).

    `requests` replays given requests (e.g. a trace) instead of drawing them from the workload's
    arrival processes with `seed`. `outputs_requested` says whether their output lengths are what
    was asked for (the model may stop earlier: the profile's output-token ratio applies) or what
    was generated; by default drawn requests are asked-for and replayed ones generated.
    Only requests completed inside the window count toward throughput, as in the reference
    benchmark client. `engine_mode="reference"` runs the plain step-by-step Python engine (same
    results, much slower), the readable specification of the fast one. `window_from` and
    `ranks_from` name where the window and the adapters' ranks come from in refusals (the CLI:
    "--duration" or the trace file, "--ranks" or the workload file); by default --duration and the workload.
    """
    prepared = prepare_run(
        workload, server, profile, duration_s=duration_s, seed=seed, requests=requests,
        outputs_requested=outputs_requested, sample_interval_s=sample_interval_s, engine_mode=engine_mode,
        window_from=window_from, ranks_from=ranks_from,
    )
    inputs = prepared.inputs
    if engine_mode == "reference":
        from loratwin.twin.reference import run_reference

        out = run_reference(inputs)
    elif engine_mode == "fast":
        out = _run_engine(inputs, prepared.profile, prepared.duration_s, n_requests=len(inputs.arrival_ns),
                          max_num_seqs=inputs.max_num_seqs)
    else:
        raise InputError(f"engine_mode must be 'fast' or 'reference', got {engine_mode!r}")
    return finish_run(prepared, out, starvation_threshold)


def prepare_run(
    workload: WorkloadSpec,
    server: ServerConfig,
    profile: Profile | str,
    *,
    duration_s: float | None = None,
    seed: int = 0,
    requests: RequestTable | None = None,
    outputs_requested: bool | None = None,
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
    engine_mode: str = "fast",
    window_from: str | None = None,
    ranks_from: str = "the workload",
) -> PreparedRun:
    """Everything `simulate` does before the engine runs (its arguments mean the same): checks,
    the requests drawn or replayed, the server resolved, the engine inputs."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    if duration_s is None:
        duration_s = DEFAULT_DURATION_S if requests is None else trace_window_s(requests)
    if not duration_s > 0:
        raise InputError(f"--duration must be > 0 seconds, got {duration_s}")
    _check_clock(duration_s, window_from)
    if not sample_interval_s > 0:
        raise InputError(f"sample interval must be > 0 seconds, got {sample_interval_s}")
    resolved = resolve_server(server, workload, profile, ranks_from)
    _check_size(workload, profile, duration_s, sample_interval_s, requests, window_from, engine_mode)
    replayed = requests is not None
    if requests is None:
        requests = generate_requests(workload, duration_s, seed, model_name=profile.tokenizer or profile.name)
    if outputs_requested is None:
        outputs_requested = not replayed
    if outputs_requested:
        realized_output = _realized_outputs(requests.output_tokens, profile)
    else:
        realized_output = requests.output_tokens
    requested_output = requests.output_tokens
    requests = RequestTable(
        arrival_s=requests.arrival_s,
        adapter=requests.adapter,
        prompt_tokens=requests.prompt_tokens,
        output_tokens=realized_output,
    )
    _check_requests(requests, resolved)

    duration_ns = int(round(duration_s * NS_PER_S))
    arrival_ns = arrival_times_ns(requests.arrival_s, duration_s)
    in_window = arrival_ns < duration_ns
    _check_step_range(profile, resolved, requests.prompt_tokens[in_window], duration_ns)
    ranks = [a.rank for a in workload.adapters]
    gpu_load_ns = np.array(
        [round(profile.adapter_load.cpu_to_gpu(resolved.max_lora_rank, r) * NS_PER_MS) for r in ranks], np.int64
    )
    disk_load_ns = np.array(
        [round(profile.adapter_load.disk_to_cpu(resolved.max_lora_rank, r) * NS_PER_MS) for r in ranks], np.int64
    )
    # As in the reference runs, the server loads its adapters at start-up: the first
    # max_cpu_loras sit in the CPU cache and the last max_loras of those in GPU slots.
    n_adapters = len(ranks)
    cpu_preloaded = np.zeros(n_adapters, np.bool_)
    cpu_preloaded[: min(n_adapters, resolved.max_cpu_loras)] = True
    gpu_preloaded = np.zeros(n_adapters, np.bool_)
    n_cpu = int(cpu_preloaded.sum())
    gpu_preloaded[max(0, n_cpu - resolved.max_loras) : n_cpu] = True

    inputs = engine.EngineInputs(
        arrival_ns=arrival_ns[in_window],
        req_adapter=requests.adapter[in_window].astype(np.int32),
        prompt_tokens=requests.prompt_tokens[in_window].astype(np.int32),
        output_tokens=requests.output_tokens[in_window].astype(np.int32),
        gpu_load_ns=gpu_load_ns,
        disk_load_ns=disk_load_ns,
        cpu_preloaded=cpu_preloaded,
        gpu_preloaded=gpu_preloaded,
        max_loras=resolved.max_loras,
        max_cpu_loras=resolved.max_cpu_loras,
        max_num_seqs=resolved.max_num_seqs,
        token_budget=resolved.max_num_batched_tokens,
        num_blocks=resolved.num_blocks,
        block_size=resolved.block_size,
        client_max_waiting=-1 if resolved.client_max_waiting is None else resolved.client_max_waiting,
        duration_ns=duration_ns,
        sample_interval_ns=int(round(sample_interval_s * NS_PER_S)),
        cost=np.array(profile.step_cost(resolved.max_loras, resolved.max_lora_rank), np.float64),
    )
    return PreparedRun(
        inputs=inputs,
        workload=workload,
        requests=RequestTable(
            arrival_s=requests.arrival_s[in_window],
            adapter=requests.adapter[in_window],
            prompt_tokens=requests.prompt_tokens[in_window],
            output_tokens=requests.output_tokens[in_window],
        ),
        requested_output_tokens=requested_output[in_window],
        profile=profile,
        server=resolved,
        duration_s=duration_s,
        seed=seed,
        lengths_name=_lengths_name(workload, profile, replayed=replayed),
    )


def finish_run(prepared: PreparedRun, out: engine.EngineOutput, starvation_threshold: float = 0.1) -> RunResult:
    """The RunResult of a prepared run from the engine's output."""
    return build_result(
        out,
        workload=prepared.workload,
        requests=prepared.requests,
        profile=prepared.profile,
        server=prepared.server,
        duration_s=prepared.duration_s,
        seed=prepared.seed,
        requested_output_tokens=prepared.requested_output_tokens,
        lengths_name=prepared.lengths_name,
        starvation_threshold=starvation_threshold,
    )
