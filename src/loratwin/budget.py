"""The budget: how much memory and time a command may use, and what its input will need, priced
from the input before anything is allocated.

The rule: a command refuses, with one line that gives the estimate and the limit, work whose
estimated peak memory or time exceeds its limit. The memory limit is `--max-memory` (a command
sets it for itself and its worker processes through the environment), else the environment
variable `LORATWIN_MAX_MEMORY`, else half of this machine's memory (or of the container's limit).
The time limit is `--max-time`, else `LORATWIN_MAX_TIME`, else an hour; work estimated at over a
minute is announced (a note through the command's `notify`) before it starts. A sweep is the
exception for time: it keeps every finished run and resumes, so its whole grid is announced, not
refused (each of its runs is held to the limit).

The estimates are sums of measured costs per item (adapter, request, engine step, time-series
sample, placement probe, sweep run), from the counts an input implies: the adapters a layout
names, the requests its rates ask for over the window, and so on. Each stage prices what it knows
before allocating it: a layout before building its adapters, a file before reading it, a
simulation before drawing its requests, a placement before judging any GPU.

What the adapters are for decides what they cost: the command sets its `Job` (`configure`), so
that a layout of 10^7 adapters for `simulate` is refused before the first one is built, while
the same layout for `workload describe` is priced as a layout alone.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loratwin.errors import InputError
from loratwin.grammar import plural

__all__ = [
    "ENV_VAR",
    "FLAG",
    "TIME_ENV_VAR",
    "TIME_FLAG",
    "Estimate",
    "Job",
    "Limit",
    "OverBudgetError",
    "TimeLimit",
    "adapters_estimate",
    "configure",
    "current_job",
    "draw_estimate",
    "estimate_rows",
    "format_bytes",
    "layout_estimate",
    "memory_limit",
    "parse_duration",
    "parse_size",
    "placement_estimate",
    "recommendation_estimate",
    "require",
    "require_disk",
    "simulation_estimate",
    "sweep_estimate",
    "time_limit",
    "trace_estimate",
    "twin_placement_estimate",
    "validation_estimate",
    "yaml_estimate",
]

ENV_VAR = "LORATWIN_MAX_MEMORY"
FLAG = "--max-memory"
# When neither the machine's nor the container's memory can be read.
FALLBACK_MACHINE_BYTES = 8e9
TIME_ENV_VAR = "LORATWIN_MAX_TIME"
TIME_FLAG = "--max-time"
# Work estimated beyond this is refused unless the limit is raised: longer than a user waits for
# a command without being asked.
DEFAULT_MAX_TIME_S = 3600.0
# Work estimated beyond this is announced before it starts.
NOTE_TIME_S = 60.0

# --- costs per item -------------------------------------------------------------------------------
# Measured on this project's 2-core x86_64 machine (Python 3.11, numpy 2, pydantic 2, numba): peak
# RSS of a fresh process above its RSS after one warm-up run (resource.getrusage, /proc/self/statm),
# or tracemalloc peaks for pure-Python objects; moderate sizes, each run well under a second to a
# minute. Rounded up: an estimate should err on the side of refusing.

# A process that has run the twin and written Parquet: 269 MB peak RSS (imports, compiled engine).
PROCESS_BYTES = 300e6

# A reference or Zipf layout (AdapterSpec objects, the id check, the layout's arrays):
# tracemalloc peak 650-693 B/adapter for 1e4 and 1e5 adapters (570 B kept); 19-24 us/adapter.
# Reading an adapters CSV row by row costs about as much: 728 B and 13 us per row (2e5 rows, RSS);
# `workload describe` 720 B and 30 us per adapter (3e5 Zipf adapters, RSS).
LAYOUT_ADAPTER_BYTES = 700
LAYOUT_ADAPTER_S = 25e-6

# A simulation, per adapter, its layout included (engine arrays, the per-adapter result rows):
# 1258 and 1277 B/adapter with 1e5 and 3e5 idle adapters; 38-44 us/adapter.
SIM_ADAPTER_BYTES = 1300
SIM_ADAPTER_S = 45e-6
# Per request (arrivals and lengths, sorting, the engine's per-request arrays and logs, the result
# table): 238-248 B/request for 1.4e5-1.2e6 requests on 8 adapters, 249 B/request with 1e5 adapters;
# 308 B/request with --out (the Parquet tables). Time: 0.5-2.2 us/request (README, benchmarks/twin_speed.py).
SIM_REQUEST_BYTES = 320
SIM_REQUEST_S = 1.5e-6
# Per engine step (the step log, its int64 copies in the result, the ITL weights): 100-105 B/step
# for 1.8e6 and 4.8e7 steps; 1.0 us/step (4.8e7 steps in 48 s of a light 1e6 s run).
SIM_STEP_BYTES = 110
SIM_STEP_S = 1.0e-6
# The reference engine (plain step-by-step Python, `simulate --engine reference`): 1.1-1.6 ms per
# request served, its steps included (16 adapters at 0.6 req/s over 300 s: 2.4 s for 1,462 requests and
# 15,712 steps; 64 adapters at 2.4 req/s over 120 s: 10.5 s for 9,360 requests; 128 adapters at 0.4 req/s
# over 120 s: 7.2 s for 6,328), 85 to 430 times the compiled engine on the same runs. It takes the
# place of the per-request and per-step times above.
REFERENCE_REQUEST_S = 1.6e-3
# Per /metrics scrape of the client's (twin.delivery, a Python loop over the scrapes): 82 B and 5.0 us
# per scrape (3.6e6 scrapes of an hour polled every 1 ms: +295 MB, +18 s over the same run unscraped).
SCRAPE_BYTES = 100
SCRAPE_S = 5.5e-6
# Per time-series sample: 20 B in the engine's log and 32 B in the result, by construction.
SIM_SAMPLE_BYTES = 64
# Per (adapter, period) of unpredictable arrivals, drawn all at once: about 80 B/period above the
# adapters (5e6 and 1e7 periods of 1e5 and 2e5 adapters), 0.6-0.7 us/period. Averaging one
# adapter's expected rate holds 4 float64 arrays over its periods.
PERIOD_BYTES = 100
PERIOD_S = 0.7e-6
PERIOD_AVERAGE_BYTES = 32

# Drawing requests alone (arrival times, adapters, lengths and their sorting): 48 B and 0.32 us per
# request (1e7 requests on 8 adapters, RSS).
DRAW_REQUEST_BYTES = 100
DRAW_REQUEST_S = 0.5e-6

# Placement, per adapter above its layout: 2.1-3.2 KB/adapter with 4e3-2e4 adapters, above a fixed
# ~100-150 MB (the lower bound's LP and the estimator's tables). The greedy memoises the verdict of
# every share it probes, keyed by its adapters: the first probe of each GPU is the whole rest, so
# the keys hold about adapters x GPUs / 2 indices of 8 bytes. Time: 3.2 s for 4e3 and 8e3 adapters
# of even rates, 17 s for 1e4 and 65 s for 2e4 Zipf adapters: about 1 ms/adapter + 1.6e-7 s x adapters^2.
PLACE_FIXED_BYTES = 150e6
PLACE_ADAPTER_BYTES = 3500
PLACE_PROBE_BYTES = 8
PLACE_ADAPTER_S = 1e-3
PLACE_PAIR_S = 1.6e-7
# A GPU served 12-13 req/s in those placements; the GPU count the memo term assumes.
PLACE_RATE_PER_GPU = 10.0
# Each GPU --gpus asks for, empty or not: +124 MB and +1.6 s for 1e6 GPUs over 10 (3 adapters, RSS).
PLACE_GPU_BYTES = 130
PLACE_GPU_S = 1.6e-6

# The twin judging a placement (place --check twin, --verify): each simulation is one GPU's share over
# the window. Beside its requests (SIM_REQUEST_S), a busy GPU's engine steps and the run's set-up cost
# 1.5e-4 s per simulated second: 240 adapters at 25 req/s (the quickstart) took 103 s for 167
# simulations of an hour on 2 GPUs, 0.62 s each. The greedy judges about log2(adapters) + 1 shares per
# GPU, each at every candidate max_loras.
TWIN_SIMULATED_SECOND_S = 1.6e-4
# The twin judging only the SLOs on the shares the estimator accepts (place --slo): the greedy starts
# each GPU after the first at the previous GPU's count, and the estimator refuses the larger probes
# without a simulation, so a later GPU costs a few shares, not a bisection: 2.2 per GPU on 2,000
# adapters of random ranks and lognormal rates (24 GPUs, ttft_p99:2000), 1 on 5,000 in a repeating
# pattern (50 GPUs); 4 per GPU is taken (the first GPU: log2(adapters) + 1).
TWIN_SCREENED_LATER_SHARES = 4.0

# Recommendation (placement on one GPU), per adapter above its layout: 2.5 KB/adapter with 2e4 and
# 1e5 adapters; 90-100 us/adapter.
RECOMMEND_ADAPTER_BYTES = 2500
RECOMMEND_ADAPTER_S = 100e-6

# Reading files, per row or byte, beside what the rows become: a trace row 366 B and 6.3 us (1e6
# rows); a workload YAML 110 B and 11 us per byte of the file (PyYAML's object graph: 5.2 MB of
# flow-style adapters, 1e5 of them, took 574 MB and 58 s).
TRACE_ROW_BYTES = 370
TRACE_ROW_S = 6.3e-6
YAML_FILE_BYTE_BYTES = 110
YAML_FILE_BYTE_S = 11e-6

# A sweep run in the parent (its configuration and key, 341 B on the paper grid, and the result
# record the store keeps, about 6 KB with 52 fields); 35 us/run to expand the grid.
SWEEP_RUN_BYTES = 6500
# A grid axis value (a list entry and its int).
AXIS_VALUE_BYTES = 40

# Replaying a real one-hour run (validate, calibrate): 0.66 s per replay on average over 16 runs drawn
# at random from the reference runs.csv (0.1 s for a server that does not start, up to 4 s for 320
# adapters at 524 req/s), one worker; a worker peaked at 612 MB RSS (310 MB traced above its imports);
# the parent keeps 6.6 KB per replay (its task, its output and its result; 30 replays, tracemalloc).
REPLAY_S = 1.0
REPLAY_WORKER_BYTES = 350e6
REPLAY_KEPT_BYTES = 8000

# Requests drawn beyond the expected count: Poisson counts stray by a few standard deviations.
REQUEST_MARGIN_SIGMAS = 5.0


# --- the limit ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    bytes: float
    source: str  # where it comes from, in words
    from_setting: bool = False  # set by --max-memory or LORATWIN_MAX_MEMORY (else the default)


MAX_SIZE_BYTES = 2**63  # sizes are counted in int64 bytes
# Which of the flag and its environment variable set each limit in this process (configure knows):
# a refusal names the one the user used.
_memory_setting = ENV_VAR
_time_setting = TIME_ENV_VAR

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str, name: str = FLAG) -> int:
    """Bytes of a size such as "8G", "500M", "1.5GB", "12GiB" or "1000000" (bytes): K, M, G, T are
    powers of 1000, KiB, MiB, GiB, TiB of 1024. An InputError naming `name` otherwise."""
    match = _SIZE.match(str(text))
    if match is None or (match.group(4) and not match.group(3)):
        raise InputError(f"{name}: expected a size such as 8G, 500M or 12GiB, got {text!r}")
    number, exponent, unit, binary, _ = match.groups()
    try:
        value = float(number) * 10 ** int(exponent or 0) * (1024 if binary else 1000) ** _UNITS[unit.lower()]
    except OverflowError:  # 1e400: far past any machine
        value = math.inf
    if value >= MAX_SIZE_BYTES:  # also inf
        raise InputError(f"{name}: {str(text).strip()!r} is too large: the largest size is {format_bytes(MAX_SIZE_BYTES)} "
                         f"(2^63 bytes), such as 8G or 500M")
    if not value >= 1:
        raise InputError(f"{name}: expected a size of at least 1 byte, such as 8G or 500M, got {text!r}")
    return int(value)


def machine_memory() -> float | None:
    """Bytes of memory this process can have: the machine's, or its container's limit when lower."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    sizes.append(int(line.split()[1]) * 1024)
        except (OSError, ValueError, IndexError):
            pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < 2**60:
            sizes.append(int(text))
    sizes = [s for s in sizes if s > 0]
    return float(min(sizes)) if sizes else None


def default_limit() -> Limit:
    memory = machine_memory()
    if memory is None:
        return Limit(FALLBACK_MACHINE_BYTES / 2, f"half of {format_bytes(FALLBACK_MACHINE_BYTES)}, "
                                                 "this machine's memory being unknown")
    return Limit(memory / 2, f"half of this machine's {format_bytes(memory)}")


def memory_limit() -> Limit:
    """The limit in force: LORATWIN_MAX_MEMORY (which --max-memory sets), else the default."""
    text = os.environ.get(ENV_VAR)
    if text is None or not text.strip():
        return default_limit()
    return Limit(parse_size(text, _memory_setting), f"from {_memory_setting}", from_setting=True)


@dataclass(frozen=True)
class TimeLimit:
    seconds: float
    source: str  # where it comes from, in words
    from_setting: bool = False  # set by --max-time or LORATWIN_MAX_TIME (else the default)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, name: str = TIME_FLAG) -> float:
    """Seconds of a duration such as "90s", "30m", "2h", "1d" or "3600" (seconds). An InputError
    naming `name` otherwise."""
    match = _DURATION.match(str(text))
    if match is None:
        raise InputError(f"{name}: expected a duration such as 30m, 2h or 1d, got {text!r}")
    number, exponent, unit = match.groups()
    try:
        value = float(number) * 10 ** int(exponent or 0) * _DURATION_UNITS[(unit or "").lower()]
    except OverflowError:
        value = math.inf
    if not (math.isfinite(value) and value >= 1):
        raise InputError(f"{name}: expected a duration of at least 1 s, such as 30m, 2h or 1d, got {text!r}")
    return value


def time_limit() -> TimeLimit:
    """The time limit in force: LORATWIN_MAX_TIME (which --max-time sets), else an hour."""
    text = os.environ.get(TIME_ENV_VAR)
    if text is None or not text.strip():
        return TimeLimit(DEFAULT_MAX_TIME_S, "the default")
    return TimeLimit(parse_duration(text, _time_setting), f"from {_time_setting}", from_setting=True)


# --- the job --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What the adapters this process loads are for, so that a layout or a file is priced for it.

    command: the command, named at the start of a refusal ("" from Python); kind: "simulate",
    "place", "recommend" or "load" (adapters priced as a layout alone); simulated_s: the window
    of each simulation (simulate); copies: simulations held at once (simulate --seeds);
    window_from: where the window comes from, in words for a refusal (e.g. "--duration")."""

    command: str = ""
    kind: str = "load"
    simulated_s: float | None = None
    copies: int = 1
    window_from: str | None = None


_JOB_KINDS = ("simulate", "place", "recommend", "load")
_job = Job()
# where a note about long work goes (a command's stderr); None: nowhere (Python use)
_notify: Callable[[str], None] | None = None
_announced_s = 0.0  # the longest estimate announced so far


def configure(command: str, max_memory: str | None = None, *, max_time: str | None = None, kind: str = "load",
              simulated_s: float | None = None, copies: int | None = 1, window_from: str | None = None,
              notify: Callable[[str], None] | None = None) -> Job:
    """A command's one call, before it reads its input: check `--max-memory` and `--max-time` (or
    their environment variables) and set the job its input is priced for (`copies` None: one per
    core). The flags' values go into the environment, so worker processes hold to the same limits.
    `notify` receives the one-line note about work estimated at over a minute."""
    global _job, _notify, _announced_s, _memory_setting, _time_setting
    if kind not in _JOB_KINDS:
        raise ValueError(f"kind must be one of {_JOB_KINDS}, got {kind!r}")
    _memory_setting = FLAG if max_memory is not None else ENV_VAR
    _time_setting = TIME_FLAG if max_time is not None else TIME_ENV_VAR
    if max_memory is not None:
        parse_size(max_memory, FLAG)
        os.environ[ENV_VAR] = str(max_memory).strip()
    else:
        memory_limit()  # a bad LORATWIN_MAX_MEMORY is named before any work
    if max_time is not None:
        parse_duration(max_time, TIME_FLAG)
        os.environ[TIME_ENV_VAR] = str(max_time).strip()
    else:
        time_limit()
    _notify, _announced_s = notify, 0.0
    if copies is None:
        copies = os.cpu_count() or 1
    copies = copies if isinstance(copies, int) and copies >= 1 else 1
    valid_window = isinstance(simulated_s, (int, float)) and math.isfinite(simulated_s) and simulated_s > 0
    _job = Job(command, kind, float(simulated_s) if valid_window else None, copies, window_from)
    return _job


def current_job() -> Job:
    return _job


# --- estimates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Peak memory (bytes) and time (seconds) of some work, and the counts they come from, in words.
    `resumable`: work that keeps what it finished when stopped (a sweep): its time is announced,
    not refused."""

    bytes: float
    seconds: float
    what: str
    resumable: bool = False


def requests_bound(expected: float) -> float:
    """Requests to make room for when `expected` are expected (Poisson counts stray a few sigmas)."""
    expected = max(0.0, float(expected))
    return expected + REQUEST_MARGIN_SIGMAS * math.sqrt(expected)


def layout_estimate(adapters: float) -> Estimate:
    return Estimate(PROCESS_BYTES + LAYOUT_ADAPTER_BYTES * adapters, LAYOUT_ADAPTER_S * adapters,
                    f"{format_count(adapters)} adapters")


def simulation_estimate(adapters: float, requests: float | None, duration_s: float, *, steps: float = 0.0,
                        samples: float = 0.0, periods: float = 0.0, scrapes: float = 0.0, copies: int = 1,
                        sample_interval_s: float | None = None, window_from: str | None = None,
                        engine: str = "fast") -> Estimate:
    """One simulation (its layout and result included), `copies` of them held at once. `requests`
    None: not counted yet. The words name what dominates the memory: the time-series samples (and
    `sample_interval_s`), the engine steps or the arrival periods when one of them is most of it,
    else the adapters and requests; `window_from` says where the window comes from (a flag, a file);
    `engine` "reference": the step-by-step Python engine's time per request; `scrapes`: the client's
    /metrics scrapes the delivery model plays through (twin.delivery)."""
    counted = requests if requests is not None else 0.0
    terms = {"samples": SIM_SAMPLE_BYTES * samples, "steps": SIM_STEP_BYTES * steps, "periods": PERIOD_BYTES * periods,
             "scrapes": SCRAPE_BYTES * scrapes}
    one = SIM_ADAPTER_BYTES * adapters + SIM_REQUEST_BYTES * counted + sum(terms.values())
    if engine == "reference":
        seconds = SIM_ADAPTER_S * adapters + REFERENCE_REQUEST_S * counted + PERIOD_S * periods
    else:
        seconds = SIM_ADAPTER_S * adapters + SIM_REQUEST_S * counted + SIM_STEP_S * steps + PERIOD_S * periods
    seconds += SCRAPE_S * scrapes
    window = format_window(duration_s) + (f" ({window_from})" if window_from else "")
    load = _counted(adapters, "adapter") + ("" if requests is None else f" and ~{format_count(requests)} requests")
    largest = max(terms, key=terms.__getitem__)
    if not terms[largest] > one / 2:  # also for nan
        what = f"{load} over {window}"
    elif largest == "samples":
        every = "" if sample_interval_s is None else f", one every {sample_interval_s:g} s (--sample-interval)"
        what = f"{format_count(samples)} time-series samples{every} over {window}, for {load}"
    elif largest == "steps":
        what = f"up to {format_count(steps)} engine steps over {window}, for {load}"
    elif largest == "scrapes":
        what = f"{format_count(scrapes)} /metrics scrapes (--metrics-poll) over {window}, for {load}"
    else:
        what = f"{format_count(periods)} periods of unpredictable arrivals over {window}, for {load}"
    if copies > 1:
        what += f", {plural(copies, 'run')}"
    if engine == "reference":
        what += " on the reference engine (--engine reference)"
    return Estimate(PROCESS_BYTES + copies * one, copies * seconds, what)


def draw_estimate(expected_requests: float, duration_s: float, hint: str = "") -> Estimate:
    """Drawing the requests a workload's arrival processes are expected to send over `duration_s`;
    `hint`: what to change, in words."""
    requests = requests_bound(expected_requests) if expected_requests == expected_requests else math.inf
    return Estimate(PROCESS_BYTES + DRAW_REQUEST_BYTES * requests, DRAW_REQUEST_S * requests,
                    f"~{format_count(requests)} requests drawn over {format_window(duration_s)}{hint}")


def trace_estimate(rows: float, adapters: float, job: Job | None = None) -> Estimate:
    """Reading a trace of `rows` requests on `adapters` adapters, and what the job does with them."""
    job = job or _job
    then = adapters_estimate(adapters, requests=rows, job=job)
    return Estimate(then.bytes + TRACE_ROW_BYTES * rows, then.seconds + TRACE_ROW_S * rows,
                    f"a trace of ~{format_count(rows)} requests on {format_count(adapters)} adapters"
                    + (f" over {format_window(job.simulated_s)}" if job.kind == "simulate" and job.simulated_s else ""))


def yaml_estimate(size_bytes: float, path: str | Path) -> Estimate:
    """Parsing a YAML file of `size_bytes` (before its content is validated)."""
    return Estimate(PROCESS_BYTES + YAML_FILE_BYTE_BYTES * size_bytes, YAML_FILE_BYTE_S * size_bytes,
                    f"reading {path} ({format_bytes(size_bytes)} of YAML)")


def drift_periods_estimate(periods: float, adapters: float, period_s: float) -> Estimate:
    """A drifting workload cut into `periods` of `period_s` (replay-drift): each period holds its
    adapters' rates, before any is placed or simulated."""
    return Estimate(PROCESS_BYTES + periods * (PERIOD_BYTES + LAYOUT_ADAPTER_BYTES * adapters),
                    periods * (PERIOD_S + LAYOUT_ADAPTER_S * adapters),
                    f"{format_count(periods)} periods of {period_s:g} s (--period) of {format_count(adapters)} adapters")


def placement_estimate(adapters: float, rate_req_s: float) -> Estimate:
    gpus = min(max(1.0, rate_req_s / PLACE_RATE_PER_GPU), max(1.0, adapters))
    memory = (PROCESS_BYTES + PLACE_FIXED_BYTES + (LAYOUT_ADAPTER_BYTES + PLACE_ADAPTER_BYTES) * adapters
              + PLACE_PROBE_BYTES * adapters * gpus / 2)
    seconds = LAYOUT_ADAPTER_S * adapters + PLACE_ADAPTER_S * adapters + PLACE_PAIR_S * adapters**2
    return Estimate(memory, seconds, f"placing {format_count(adapters)} adapters")


def requested_gpus_estimate(gpus: float) -> Estimate:
    """What placing on `gpus` GPUs (place --gpus) needs for the GPUs alone, beside the adapters."""
    return Estimate(PROCESS_BYTES + PLACE_FIXED_BYTES + PLACE_GPU_BYTES * gpus, PLACE_GPU_S * gpus,
                    f"placing on {format_count(gpus)} GPUs (--gpus)")


def twin_placement_estimate(adapters: float, rate_req_s: float, window_s: float, *, slot_candidates: int = 0,
                            verify: bool = False, workers: int = 1, gpus_judged: float | None = None,
                            screened: bool = False, flag: str = "the twin check (--check twin)",
                            verify_flag: str = "--verify") -> Estimate:
    """The twin's work on a placement: with `slot_candidates` (place --check twin; or the twin's runs
    per share judging SLOs the estimator does not predict), a simulation of every share the greedy
    judges at each candidate max_loras, one after another; with `verify`, one simulation per GPU on
    `workers` processes. Each lasts the window (`window_s`). `gpus_judged`: the GPUs whose shares are
    judged (recommend: 1), when not all. `screened`: the twin runs only on the shares an estimator
    accepts (the SLOs it does not predict), a few per GPU after the first. `flag`: what asks for the
    twin check, as the user typed it; `verify_flag`: what asks for the simulation per GPU."""
    gpus = min(max(1.0, rate_req_s / PLACE_RATE_PER_GPU), max(1.0, adapters))
    requests = requests_bound(rate_req_s / gpus * window_s)
    one_s = SIM_ADAPTER_S * adapters / gpus + SIM_REQUEST_S * requests + TWIN_SIMULATED_SECOND_S * window_s
    one_bytes = SIM_ADAPTER_BYTES * adapters / gpus + SIM_REQUEST_BYTES * requests
    judged = gpus if gpus_judged is None else min(gpus, gpus_judged)
    bisection = math.log2(max(adapters, 1.0)) + 1
    shares = bisection + (judged - 1) * min(bisection, TWIN_SCREENED_LATER_SHARES) if screened else judged * bisection
    checks = shares * slot_candidates
    workers = max(1, min(workers, math.ceil(gpus)))  # the runs at once: a worker per GPU at most (simulate_many)
    seconds = one_s * checks + (one_s * math.ceil(gpus / workers) if verify else 0.0)
    flags = " and ".join(w for w, on in ((flag, checks > 0), (verify_flag, verify)) if on)
    return Estimate(PROCESS_BYTES + PLACE_FIXED_BYTES + (workers if verify else 1) * one_bytes, seconds,
                    f"simulating ~{format_count(checks + (gpus if verify else 0))} GPU shares of {format_window(window_s)} "
                    f"(--window) for {flags}, {format_count(adapters)} adapters at {rate_req_s:g} req/s")


def recommendation_estimate(adapters: float) -> Estimate:
    return Estimate(PROCESS_BYTES + (LAYOUT_ADAPTER_BYTES + RECOMMEND_ADAPTER_BYTES) * adapters,
                    (LAYOUT_ADAPTER_S + RECOMMEND_ADAPTER_S) * adapters, f"{format_count(adapters)} adapters")


def validation_estimate(runs: float, seeds: float, workers: int, what: str = "") -> Estimate:
    """Replaying `runs` real runs `seeds` times each on `workers` processes (validate, calibrate):
    each worker holds one replay, the parent every replay's result. `what`: what the runs are, in words."""
    workers = max(1, int(workers))
    replays = runs * seeds
    return Estimate(PROCESS_BYTES + REPLAY_KEPT_BYTES * replays + workers * REPLAY_WORKER_BYTES,
                    REPLAY_S * replays / min(workers, max(replays, 1)),
                    f"{format_count(replays)} replays ({_counted(runs, 'run')}{what} x {_counted(seeds, 'seed')}) on "
                    f"{_counted(workers, 'worker')}")


def sweep_estimate(runs: float, largest_run: Estimate, parallel: int) -> Estimate:
    """A sweep: every run's configuration and stored record in the parent, and `parallel` workers
    each holding a run as large as the largest."""
    parallel = max(1, int(parallel))
    worker = largest_run.bytes - PROCESS_BYTES
    return Estimate(PROCESS_BYTES + SWEEP_RUN_BYTES * runs + parallel * (PROCESS_BYTES + worker),
                    largest_run.seconds * runs / parallel,
                    f"{format_count(runs)} runs on {parallel} workers, the largest of {largest_run.what}", resumable=True)


def adapters_estimate(adapters: float, rate_req_s: float = 0.0, requests: float | None = None,
                      job: Job | None = None) -> Estimate:
    """What the current job needs for `adapters` with `rate_req_s` in total (base rates), or for
    `requests` given (a trace): the early check, before the adapters are built. Never more than
    what the later, exact check of the same job finds (it adds what only it can count)."""
    job = job or _job
    if job.kind == "simulate" and job.simulated_s is not None:
        if requests is None and rate_req_s > 0:  # no rate (not read yet): the requests are not counted, nor named
            requests = requests_bound(rate_req_s * job.simulated_s)
        return simulation_estimate(adapters, requests, job.simulated_s, copies=job.copies, window_from=job.window_from)
    if job.kind == "simulate" and requests is not None:
        return simulation_estimate(adapters, requests, 0.0)
    if job.kind == "place":
        return placement_estimate(adapters, rate_req_s)
    if job.kind == "recommend":
        return recommendation_estimate(adapters)
    return layout_estimate(adapters)


def require(estimate: Estimate, job: Job | None = None) -> None:
    """Refuse work whose estimate exceeds a limit, memory first: one line with the estimate and the
    limit. Work within the limits but estimated at over a minute is announced."""
    job = job or _job
    prefix = f"{job.command}: " if job.command else ""
    limit = memory_limit()
    if not estimate.bytes <= limit.bytes:  # also refuses nan
        how = "raise it to allow this" if limit.from_setting else f"set {FLAG} or {ENV_VAR} to raise it"
        memory = f"about {format_bytes(estimate.bytes)} of memory" if math.isfinite(estimate.bytes) else "unbounded memory"
        time = f" and roughly {format_seconds(estimate.seconds)}" if estimate.seconds >= 10 else ""
        raise OverBudgetError(
            f"{prefix}{memory}{time} needed for {estimate.what} "
            f"(limit {format_bytes(limit.bytes)}, {limit.source}: {how})"
        )
    timed = time_limit()
    if not estimate.seconds <= timed.seconds and not estimate.resumable:
        how = "raise it to allow this" if timed.from_setting else f"set {TIME_FLAG} or {TIME_ENV_VAR} to raise it"
        raise OverBudgetError(
            f"{prefix}roughly {format_seconds(estimate.seconds)} of work estimated for {estimate.what} "
            f"(limit {format_seconds(timed.seconds)}, {timed.source}: {how})"
        )
    _announce(estimate, prefix)


def _announce(estimate: Estimate, prefix: str) -> None:
    """The note about long work, once per process for each estimate twice as long as the last one
    announced (a command prices its input early and again exactly), from the command's own process."""
    global _announced_s
    if _notify is None or not estimate.seconds >= NOTE_TIME_S or estimate.seconds < 2 * _announced_s:
        return
    if multiprocessing.parent_process() is not None:  # a worker: its command has spoken
        return
    _announced_s = estimate.seconds
    why = ("stopped, it keeps what it finished and resumes" if estimate.resumable
           else f"limit {format_seconds(time_limit().seconds)}: {TIME_FLAG}")
    _notify(f"note: {prefix}roughly {format_seconds(estimate.seconds)} of work estimated for {estimate.what} ({why})")


class OverBudgetError(InputError):
    """Work refused up front: its estimated memory or time exceeds the limit."""


# Free space a write leaves untouched: a disk filled to the last byte breaks whatever writes next.
DISK_MARGIN_BYTES = 100e6


def require_disk(size_bytes: float, folder: str | Path, what: str, flag: str = "--out") -> None:
    """Refuse to write `size_bytes` into `folder` (or the nearest folder above it that exists) when the
    disk there has less free space, with DISK_MARGIN_BYTES to spare: one line with both sizes."""
    place = Path(folder).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        free = shutil.disk_usage(place).free
    except OSError:
        return  # the writer reports a place it cannot use
    if size_bytes + DISK_MARGIN_BYTES > free:
        raise OverBudgetError(
            f"{flag} {folder}: {what} take {format_bytes(size_bytes)} and the disk holds {format_bytes(free)} free "
            f"(keeping {format_bytes(DISK_MARGIN_BYTES)} spare); free some space or write elsewhere"
        )


# --- files ----------------------------------------------------------------------------------------

SAMPLE_BYTES = 1 << 20


def estimate_rows(path: str | Path) -> int:
    """Lines of a text file, counted when it is small, else extrapolated from its first megabyte:
    what reading it will hold, known before it is read. 0 for a file that cannot be read (the
    reader reports that)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            sample = handle.read(SAMPLE_BYTES)
    except OSError:
        return 0
    lines = sample.count(b"\n") + (1 if sample and not sample.endswith(b"\n") else 0)
    if size <= len(sample) or not sample:
        return lines
    return int(math.ceil(size * max(lines, 1) / len(sample)))


# --- words ----------------------------------------------------------------------------------------


def format_bytes(value: float) -> str:
    """1234567 -> "1.2 MB", 12.6e9 -> "12.6 GB" (powers of 1000)."""
    if not math.isfinite(value):
        return "unbounded"
    if value >= 1e18:
        return f"{format_count(value)} bytes"
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            number = value / scale
            return f"{number:.1f} {unit}" if number < 100 else f"{number:,.0f} {unit}"
    return f"{value:.0f} B"


def format_count(value: float) -> str:
    """3600 -> "3,600"; 1e9 -> "1e9"; 3.6e12 -> "3.6e12"."""
    if not math.isfinite(value):
        return "unboundedly many"
    if value < 1e6:
        return f"{value:,.0f}"
    mantissa, exponent = f"{value:.2g}".split("e")
    return f"{mantissa}e{int(exponent)}"


def format_seconds(seconds: float) -> str:
    """Work time: 90 -> "90 s", 7200 -> "2 h", 1e10 -> "317 years"."""
    if not math.isfinite(seconds):
        return "forever"
    for unit, scale in (("years", 365 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * scale:
            return f"{format_count(seconds / scale)} {unit}"
        if seconds == scale:  # a limit of a round unit: "1 h"
            return f"1 {unit.removesuffix('s') if unit.endswith('s') else unit}"
    return f"{seconds:.0f} s"


def _counted(value: float, noun: str) -> str:
    """1 adapter, 4 adapters, 1e6 adapters."""
    return f"{format_count(value)} {noun}{'' if value == 1 else 's'}"


def format_window(seconds: float) -> str:
    """A simulated window: 3600 -> "3600 s", 1e9 -> "1e9 s"."""
    return f"{seconds:g} s" if seconds < 1e6 else f"{format_count(seconds)} s"

