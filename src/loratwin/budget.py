"""The memory budget: how much memory a command may use, and what its input will need, priced from
the input before anything is allocated.

The rule: a command refuses, with one line that gives the estimate and the limit, work whose
estimated peak memory exceeds the limit. The limit is `--max-memory` (a command sets it for itself
and its worker processes through the environment), else the environment variable
`LORATWIN_MAX_MEMORY`, else half of this machine's memory (or of the container's limit).

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
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from loratwin.errors import InputError

__all__ = [
    "ENV_VAR",
    "FLAG",
    "Estimate",
    "Job",
    "Limit",
    "OverBudgetError",
    "adapters_estimate",
    "configure",
    "current_job",
    "estimate_rows",
    "format_bytes",
    "layout_estimate",
    "memory_limit",
    "parse_size",
    "placement_estimate",
    "recommendation_estimate",
    "require",
    "require_disk",
    "simulation_estimate",
    "sweep_estimate",
    "trace_estimate",
    "yaml_estimate",
]

ENV_VAR = "LORATWIN_MAX_MEMORY"
FLAG = "--max-memory"
# When neither the machine's nor the container's memory can be read.
FALLBACK_MACHINE_BYTES = 8e9

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
# Per time-series sample: 20 B in the engine's log and 32 B in the result, by construction.
SIM_SAMPLE_BYTES = 64
# Per (adapter, period) of unpredictable arrivals, drawn all at once: about 80 B/period above the
# adapters (5e6 and 1e7 periods of 1e5 and 2e5 adapters), 0.6-0.7 us/period. Averaging one
# adapter's expected rate holds 4 float64 arrays over its periods.
PERIOD_BYTES = 100
PERIOD_S = 0.7e-6
PERIOD_AVERAGE_BYTES = 32

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

# Requests drawn beyond the expected count: Poisson counts stray by a few standard deviations.
REQUEST_MARGIN_SIGMAS = 5.0


# --- the limit ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    bytes: float
    source: str  # where it comes from, in words
    from_setting: bool = False  # set by --max-memory or LORATWIN_MAX_MEMORY (else the default)


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
    if not (math.isfinite(value) and 1 <= value < 2**63):
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
    return Limit(parse_size(text, ENV_VAR), f"from {FLAG} or {ENV_VAR}", from_setting=True)


# --- the job --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What the adapters this process loads are for, so that a layout or a file is priced for it.

    command: the command, named at the start of a refusal ("" from Python); kind: "simulate",
    "place", "recommend" or "load" (adapters priced as a layout alone); simulated_s: the window
    of each simulation (simulate); copies: simulations held at once (simulate --seeds)."""

    command: str = ""
    kind: str = "load"
    simulated_s: float | None = None
    copies: int = 1


_JOB_KINDS = ("simulate", "place", "recommend", "load")
_job = Job()


def configure(command: str, max_memory: str | None = None, *, kind: str = "load",
              simulated_s: float | None = None, copies: int | None = 1) -> Job:
    """A command's one call, before it reads its input: check `--max-memory` (or the environment
    variable) and set the job its input is priced for (`copies` None: one per core). The flag's
    value goes into the environment, so worker processes hold to the same limit."""
    global _job
    if kind not in _JOB_KINDS:
        raise ValueError(f"kind must be one of {_JOB_KINDS}, got {kind!r}")
    if max_memory is not None:
        parse_size(max_memory, FLAG)
        os.environ[ENV_VAR] = str(max_memory).strip()
    else:
        memory_limit()  # a bad LORATWIN_MAX_MEMORY is named before any work
    if copies is None:
        copies = os.cpu_count() or 1
    copies = copies if isinstance(copies, int) and copies >= 1 else 1
    valid_window = isinstance(simulated_s, (int, float)) and math.isfinite(simulated_s) and simulated_s > 0
    _job = Job(command, kind, float(simulated_s) if valid_window else None, copies)
    return _job


def current_job() -> Job:
    return _job


# --- estimates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Peak memory (bytes) and time (seconds) of some work, and the counts they come from, in words."""

    bytes: float
    seconds: float
    what: str


def requests_bound(expected: float) -> float:
    """Requests to make room for when `expected` are expected (Poisson counts stray a few sigmas)."""
    expected = max(0.0, float(expected))
    return expected + REQUEST_MARGIN_SIGMAS * math.sqrt(expected)


def layout_estimate(adapters: float) -> Estimate:
    return Estimate(PROCESS_BYTES + LAYOUT_ADAPTER_BYTES * adapters, LAYOUT_ADAPTER_S * adapters,
                    f"{format_count(adapters)} adapters")


def simulation_estimate(adapters: float, requests: float, duration_s: float, *, steps: float = 0.0,
                        samples: float = 0.0, periods: float = 0.0, copies: int = 1) -> Estimate:
    """One simulation (its layout and result included), `copies` of them held at once."""
    one = (SIM_ADAPTER_BYTES * adapters + SIM_REQUEST_BYTES * requests + SIM_STEP_BYTES * steps
           + SIM_SAMPLE_BYTES * samples + PERIOD_BYTES * periods)
    seconds = SIM_ADAPTER_S * adapters + SIM_REQUEST_S * requests + SIM_STEP_S * steps + PERIOD_S * periods
    what = f"{format_count(adapters)} adapters and ~{format_count(requests)} requests over {format_window(duration_s)}"
    if copies > 1:
        what += f", {copies} runs"
    return Estimate(PROCESS_BYTES + copies * one, copies * seconds, what)


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


def placement_estimate(adapters: float, rate_req_s: float) -> Estimate:
    gpus = min(max(1.0, rate_req_s / PLACE_RATE_PER_GPU), max(1.0, adapters))
    memory = (PROCESS_BYTES + PLACE_FIXED_BYTES + (LAYOUT_ADAPTER_BYTES + PLACE_ADAPTER_BYTES) * adapters
              + PLACE_PROBE_BYTES * adapters * gpus / 2)
    seconds = LAYOUT_ADAPTER_S * adapters + PLACE_ADAPTER_S * adapters + PLACE_PAIR_S * adapters**2
    return Estimate(memory, seconds, f"placing {format_count(adapters)} adapters")


def recommendation_estimate(adapters: float) -> Estimate:
    return Estimate(PROCESS_BYTES + (LAYOUT_ADAPTER_BYTES + RECOMMEND_ADAPTER_BYTES) * adapters,
                    (LAYOUT_ADAPTER_S + RECOMMEND_ADAPTER_S) * adapters, f"{format_count(adapters)} adapters")


def sweep_estimate(runs: float, largest_run: Estimate, parallel: int) -> Estimate:
    """A sweep: every run's configuration and stored record in the parent, and `parallel` workers
    each holding a run as large as the largest."""
    parallel = max(1, int(parallel))
    worker = largest_run.bytes - PROCESS_BYTES
    return Estimate(PROCESS_BYTES + SWEEP_RUN_BYTES * runs + parallel * (PROCESS_BYTES + worker),
                    largest_run.seconds * runs / parallel,
                    f"{format_count(runs)} runs on {parallel} workers, the largest of {largest_run.what}")


def adapters_estimate(adapters: float, rate_req_s: float = 0.0, requests: float | None = None,
                      job: Job | None = None) -> Estimate:
    """What the current job needs for `adapters` with `rate_req_s` in total (base rates), or for
    `requests` given (a trace): the early check, before the adapters are built. Never more than
    what the later, exact check of the same job finds (it adds what only it can count)."""
    job = job or _job
    if job.kind == "simulate" and job.simulated_s is not None:
        if requests is None:
            requests = requests_bound(rate_req_s * job.simulated_s)
        return simulation_estimate(adapters, requests, job.simulated_s, copies=job.copies)
    if job.kind == "simulate" and requests is not None:
        return simulation_estimate(adapters, requests, 0.0)
    if job.kind == "place":
        return placement_estimate(adapters, rate_req_s)
    if job.kind == "recommend":
        return recommendation_estimate(adapters)
    return layout_estimate(adapters)


def require(estimate: Estimate, job: Job | None = None) -> None:
    """Refuse work whose estimate exceeds the limit: one line with the estimate and the limit."""
    limit = memory_limit()
    if estimate.bytes <= limit.bytes:  # also refuses nan
        return
    job = job or _job
    prefix = f"{job.command}: " if job.command else ""
    how = "raise it to allow this" if limit.from_setting else f"set {FLAG} or {ENV_VAR} to raise it"
    memory = f"about {format_bytes(estimate.bytes)} of memory" if math.isfinite(estimate.bytes) else "unbounded memory"
    time = f" and roughly {format_seconds(estimate.seconds)}" if estimate.seconds >= 10 else ""
    raise OverBudgetError(
        f"{prefix}{memory}{time} needed for {estimate.what} "
        f"(limit {format_bytes(limit.bytes)}, {limit.source}: {how})"
    )


class OverBudgetError(InputError):
    """Work refused up front: its estimated memory exceeds the limit."""


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
    return f"{seconds:.0f} s"


def format_window(seconds: float) -> str:
    """A simulated window: 3600 -> "3600 s", 1e9 -> "1e9 s"."""
    return f"{seconds:g} s" if seconds < 1e6 else f"{format_count(seconds)} s"

