"""Sweep grids: a YAML schema of axes, the built-in `paper` grid, and their expansion into runs.

A grid is a product of axes. Workloads are (rate levels or a Zipf popularity law) x rank mix x
arrival process x seed; every workload is run for each served count and each `max_loras` <= served.
Each run has a stable key (a hash of everything that determines its result), so a store can tell
which runs are done whatever the order or the number of workers.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from loratwin import budget
from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.profiles import Profile, load_profile
from loratwin.profiles.lora_rank import check_max_lora_rank, server_max_lora_rank
from loratwin.textfile import read_user_text
from loratwin.twin.config import REFERENCE_CLIENT_MAX_WAITING, ServerConfig
from loratwin.twin.simulation import DEFAULT_SAMPLE_INTERVAL_S
from loratwin.validate.ml_test import GRID_COUNTS
from loratwin.workload import (
    PoissonArrival,
    WorkloadSpec,
    reference_layout,
    zipf_layout,
)
from loratwin.workload.spec import ArrivalSpec, describe_validation_error
from loratwin.yamlfile import parse_yaml

BUILTIN_GRIDS = ("paper",)

Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Rank = Annotated[int, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CountRange(_Strict):
    """`{start, stop, step}`: start, start + step, ... up to and including stop."""

    start: Count
    stop: Count
    step: Count = 1

    @model_validator(mode="after")
    def _ordered(self) -> CountRange:
        if self.stop < self.start:
            raise ValueError(f"stop ({self.stop}) must be >= start ({self.start})")
        return self

    def values(self) -> list[int]:
        count = (self.stop - self.start) // self.step + 1
        budget.require(budget.Estimate(budget.PROCESS_BYTES + budget.AXIS_VALUE_BYTES * count, 0.0,
                                       f"a grid axis of {budget.format_count(count)} values"))
        return list(range(self.start, self.stop + 1, self.step))


def _expand_counts(value: Any) -> Any:
    # `{start, stop, step}` is shorthand for the list it spans; a single number for a list of one.
    if isinstance(value, dict):
        return _validated(CountRange, value, "a range {start, stop, step}").values()
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    return value


def _validated(model: type[BaseModel], value: dict, what: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False):
            where = ".".join(str(p) for p in e["loc"])
            message = e["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ValueError(f"expected {what}: " + "; ".join(problems)) from None


CountAxis = Annotated[list[Count], Field(min_length=1), BeforeValidator(_expand_counts)]


class RateCombinations(_Strict):
    """Every `choose`-combination of `levels` (in the order given), each one workload's rate levels."""

    levels: Annotated[list[Rate], Field(min_length=1)]
    choose: Count = 3

    @model_validator(mode="after")
    def _enough_levels(self) -> RateCombinations:
        if self.choose > len(self.levels):
            raise ValueError(f"choose ({self.choose}) must be <= the number of levels ({len(self.levels)})")
        return self

    def values(self) -> list[list[float]]:
        return [list(c) for c in itertools.combinations(self.levels, self.choose)]


def _expand_rates(value: Any) -> Any:
    # `{levels, choose}` is shorthand for the list of its combinations.
    if isinstance(value, dict):
        return _validated(RateCombinations, value, "rate combinations {levels, choose}").values()
    return value


class ZipfPopularity(_Strict):
    """Skewed popularity: adapter i gets a rate proportional to 1 / (i + 1)^exponent, summing to the total."""

    total_rate_req_s: Rate
    exponent: Rate = 1.0


class ServerAxes(_Strict):
    """Server flags held fixed over the grid (vLLM's names). `max_cpu_loras` is always the served count,
    as in the reference runs; `max_lora_rank` None means the smallest value vLLM accepts that
    serves the largest rank of each workload."""

    max_lora_rank: Rank | None = None
    max_num_seqs: Count = 2048
    max_num_batched_tokens: Count = 2048
    client_max_waiting: Count | None = None

    @field_validator("max_lora_rank")
    @classmethod
    def _accepted_by_vllm(cls, value: int | None) -> int | None:
        if value is not None:
            try:
                check_max_lora_rank(value, "max_lora_rank")
            except InputError as err:
                raise ValueError(str(err)) from None
        return value


class GridSpec(_Strict):
    """A sweep grid as written in YAML."""

    name: Annotated[str, Field(min_length=1)] = "grid"
    profile: Annotated[str, Field(min_length=1)] = "llama-3.1-8b-instruct"
    duration_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 3600.0
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = [0]
    served: CountAxis
    max_loras: CountAxis
    rates: Annotated[
        list[Annotated[list[Rate], Field(min_length=1)]], Field(min_length=1), BeforeValidator(_expand_rates)
    ] | None = None
    popularity: Annotated[list[ZipfPopularity], Field(min_length=1)] | None = None
    ranks: Annotated[list[Annotated[list[Rank], Field(min_length=1)]], Field(min_length=1)]
    arrival: Annotated[list[ArrivalSpec], Field(min_length=1)] = [PoissonArrival()]
    server: ServerAxes = ServerAxes()

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("must be distinct")
        return seeds

    @model_validator(mode="after")
    def _has_load(self) -> GridSpec:
        if self.rates is None and self.popularity is None:
            raise ValueError(
                "expected 'rates' (a list of rate-level lists, or {levels, choose}) and/or "
                "'popularity' (a list of {total_rate_req_s, exponent})"
            )
        try:
            server_max_lora_rank(max(r for mix in self.ranks for r in mix))
        except InputError as err:
            raise ValueError(f"ranks: {err}") from None
        if self.server.max_lora_rank is not None:
            too_high = [r for mix in self.ranks for r in mix if r > self.server.max_lora_rank]
            if too_high:
                raise ValueError(
                    f"ranks: rank {max(too_high)} is above server.max_lora_rank ({self.server.max_lora_rank})"
                )
        return self

    def served_values(self) -> list[int]:
        return sorted(set(self.served))

    def max_loras_values(self) -> list[int]:
        return sorted(set(self.max_loras))

    def canonical(self) -> dict[str, Any]:
        """The grid as plain data, defaults filled in: equal grids give equal dicts."""
        return self.model_dump(mode="json")


PAPER_LEVELS = [3.2, 1.6, 0.8, 0.4, 0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125]
PAPER_COUNTS = list(GRID_COUNTS)
PAPER_RANK_MIXES = [[8, 8, 8], [8, 8, 16], [8, 8, 32], [8, 16, 16], [8, 16, 32], [16, 16, 16], [16, 16, 32]]


def paper_grid(profile: str = "llama-3.1-8b-instruct", client_max_waiting: int | None = REFERENCE_CLIENT_MAX_WAITING) -> GridSpec:
    """The published training grid: served and max_loras over the same ten counts, every 3-combination
    of ten rate levels, seven rank mixes, one hour, seed 0; the reference client's queue cap."""
    return GridSpec(
        name="paper",
        profile=profile,
        duration_s=3600.0,
        seeds=[0],
        served=PAPER_COUNTS,
        max_loras=PAPER_COUNTS,
        rates=RateCombinations(levels=PAPER_LEVELS, choose=3).values(),
        ranks=PAPER_RANK_MIXES,
        server=ServerAxes(client_max_waiting=client_max_waiting),
    )


def load_grid(name_or_path: str | Path) -> tuple[GridSpec, str]:
    """A built-in grid by name or a grid YAML file; also returns the source named in error messages."""
    text = str(name_or_path)
    path = Path(text)
    if text in BUILTIN_GRIDS and not path.exists():
        return paper_grid(), text
    if not path.exists():
        raise InputError(
            f"{text}: no such grid file, and not a built-in grid (built-in: {', '.join(BUILTIN_GRIDS)})"
        )
    return grid_from_yaml(read_user_text(path, "a grid YAML file", encoding="utf-8"), str(path)), str(path)


def grid_from_yaml(text: str, source: str) -> GridSpec:
    document = parse_yaml(text, source)
    if not isinstance(document, dict):
        raise InputError(f"{source}: expected a mapping of grid fields (served, max_loras, rates, ranks, ...)")
    try:
        return GridSpec.model_validate(document)
    except ValidationError as err:
        message = describe_validation_error(source, err, GridSpec)
        # pydantic names the arrival kind chosen inside the location; the file has no such key
        raise InputError(re.sub(r"(arrival\[\d+\])\.(?:poisson|gamma|unpredictable)\b", r"\1", message)) from None


# --- expansion ----------------------------------------------------------------------------------


def stable_hash(data: Any, length: int = 16) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class WorkloadPoint:
    """One workload of a grid, for any served count: the layout and its parameters."""

    index: int
    layout: Literal["levels", "zipf"]
    rate_levels: tuple[float, ...]
    zipf_total_rate_req_s: float | None
    zipf_exponent: float | None
    rank_levels: tuple[int, ...]
    arrival: str  # canonical JSON of the arrival process
    seed: int

    def identity(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "rate_levels": list(self.rate_levels),
            "zipf_total_rate_req_s": self.zipf_total_rate_req_s,
            "zipf_exponent": self.zipf_exponent,
            "rank_levels": list(self.rank_levels),
            "arrival": self.arrival,
            "seed": self.seed,
        }

    @cached_property
    def key(self) -> str:
        return stable_hash(self.identity())

    def build(self, served: int) -> WorkloadSpec:
        arrival = _arrival_from_json(self.arrival)
        if self.layout == "zipf":
            assert self.zipf_total_rate_req_s is not None and self.zipf_exponent is not None
            return zipf_layout(
                served, self.zipf_total_rate_req_s, self.zipf_exponent, self.rank_levels, self.seed, arrival=arrival
            )
        return reference_layout(served, self.rate_levels, self.rank_levels, self.seed, arrival=arrival)


def _arrival_from_json(text: str) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(ArrivalSpec).validate_python(json.loads(text))


@dataclass(frozen=True)
class RunConfig:
    """One twin run of a sweep."""

    workload: WorkloadPoint
    served: int
    max_loras: int
    max_lora_rank: int
    profile: str
    profile_hash: str
    duration_s: float
    max_num_seqs: int
    max_num_batched_tokens: int
    client_max_waiting: int | None

    def identity(self) -> dict[str, Any]:
        return {
            "workload": self.workload.identity(),
            "served": self.served,
            "max_loras": self.max_loras,
            "max_lora_rank": self.max_lora_rank,
            "profile_hash": self.profile_hash,
            "duration_s": self.duration_s,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "client_max_waiting": self.client_max_waiting,
        }

    @cached_property
    def key(self) -> str:
        return stable_hash(self.identity())

    def server_config(self) -> ServerConfig:
        return ServerConfig(
            max_loras=self.max_loras,
            max_cpu_loras=self.served,
            max_lora_rank=self.max_lora_rank,
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            client_max_waiting=self.client_max_waiting,
        )

    def columns(self) -> dict[str, Any]:
        """The run's identity as flat result-table columns."""
        w = self.workload
        return {
            "config_key": self.key,
            "workload_key": w.key,
            "workload_index": w.index,
            "profile": self.profile,
            "profile_hash": self.profile_hash,
            "layout": w.layout,
            "rate_levels": list(w.rate_levels),
            "zipf_total_rate_req_s": w.zipf_total_rate_req_s,
            "zipf_exponent": w.zipf_exponent,
            "rank_levels": list(w.rank_levels),
            "arrival": w.arrival,
            "seed": w.seed,
            "duration_s": self.duration_s,
            "served": self.served,
            "max_loras": self.max_loras,
            "max_lora_rank": self.max_lora_rank,
            "max_cpu_loras": self.served,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "client_max_waiting": self.client_max_waiting,
        }


def profile_hash(profile: Profile) -> str:
    """Results depend on the profile's content, not its name: an edited profile gives new keys."""
    return stable_hash(profile.model_dump(mode="json"), 12)


@dataclass
class Expansion:
    """A grid expanded: the runs to do, grouped in frontiers, and what was skipped up front."""

    grid: GridSpec
    profile: Profile
    workloads: list[WorkloadPoint]
    runs: list[RunConfig]
    skipped_infeasible: int
    # (workload index, max_loras) -> runs in ascending served order
    frontiers: dict[tuple[int, int], list[RunConfig]] = field(default_factory=dict)
    # where the skipped configurations lie in grid order: (runs before them, how many)
    skipped_at: list[tuple[int, int]] = field(default_factory=list)

    def skipped_within(self, max_runs: int | None) -> int:
        """The configurations skipped (they cannot start) among those considered to take the first
        `max_runs` runs in grid order (all of them when None)."""
        if max_runs is None or max_runs >= len(self.runs):
            return self.skipped_infeasible
        return sum(count for before, count in self.skipped_at if before < max_runs)


def grid_workloads(grid: GridSpec) -> list[WorkloadPoint]:
    loads: list[tuple[str, tuple[float, ...], float | None, float | None]] = []
    if grid.rates is not None:
        loads += [("levels", tuple(float(r) for r in rates), None, None) for rates in grid.rates]
    if grid.popularity is not None:
        loads += [("zipf", (), float(p.total_rate_req_s), float(p.exponent)) for p in grid.popularity]
    arrivals = [json.dumps(a.model_dump(mode="json"), sort_keys=True, separators=(",", ":")) for a in grid.arrival]
    points = []
    for (layout, rates, total, exponent), ranks, arrival, seed in itertools.product(
        loads, grid.ranks, arrivals, grid.seeds
    ):
        points.append(
            WorkloadPoint(
                index=len(points),
                layout=layout,  # type: ignore[arg-type]
                rate_levels=rates,
                zipf_total_rate_req_s=total,
                zipf_exponent=exponent,
                rank_levels=tuple(int(r) for r in ranks),
                arrival=arrival,
                seed=int(seed),
            )
        )
    return points


def expand(
    grid: GridSpec,
    source: str = "grid",
    *,
    profile: Profile | None = None,
    workload_slice: slice | None = None,
) -> Expansion:
    """All feasible runs of `grid` (the workloads selected by `workload_slice`), in grid order:
    workload, then max_loras, then served. Configurations the server cannot start are counted,
    not listed."""
    if profile is None:
        try:
            profile = load_profile(grid.profile)
        except InputError as err:
            raise InputError(f"{source}: profile: {err}") from None
    p_hash = profile_hash(profile)
    workloads = grid_workloads(grid)
    if workload_slice is not None:
        selected = workloads[workload_slice]
        if not selected:
            raise InputError(f"--workloads {_slice_text(workload_slice)} selects none of the grid's {len(workloads)} "
                             "workloads (START:STOP counts from 0, STOP excluded)")
        workloads = selected
    served_values, max_loras_values = grid.served_values(), grid.max_loras_values()
    _check_size(grid, workloads, served_values, max_loras_values)
    feasible: dict[tuple[int, int], bool] = {}
    runs: list[RunConfig] = []
    frontiers: dict[tuple[int, int], list[RunConfig]] = {}
    skipped = 0
    skipped_at: list[tuple[int, int]] = []
    for w in workloads:
        rank = grid.server.max_lora_rank or server_max_lora_rank(max(w.rank_levels))
        for max_loras in max_loras_values:
            served_ok = [s for s in served_values if s >= max_loras]
            if not served_ok:
                continue
            if (max_loras, rank) not in feasible:
                feasible[(max_loras, rank)] = _starts(profile, max_loras, rank, source)
            if not feasible[(max_loras, rank)]:
                skipped += len(served_ok)
                skipped_at.append((len(runs), len(served_ok)))
                continue
            frontier = [
                RunConfig(
                    workload=w,
                    served=served,
                    max_loras=max_loras,
                    max_lora_rank=rank,
                    profile=profile.name,
                    profile_hash=p_hash,
                    duration_s=float(grid.duration_s),
                    max_num_seqs=grid.server.max_num_seqs,
                    max_num_batched_tokens=grid.server.max_num_batched_tokens,
                    client_max_waiting=grid.server.client_max_waiting,
                )
                for served in served_ok
            ]
            frontiers[(w.index, max_loras)] = frontier
            runs.extend(frontier)
    return Expansion(grid, profile, workloads, runs, skipped, frontiers, skipped_at)


def _check_size(grid: GridSpec, workloads: list[WorkloadPoint], served: list[int], max_loras: list[int]) -> None:
    """Refuse a grid too large for the memory limit before its runs are listed: every run's record
    in this process, and as many runs as the largest at once as there are workers."""
    runs = len(workloads) * sum(len(served) - bisect.bisect_left(served, m) for m in max_loras)
    if not runs:
        return
    largest = served[-1]
    rate = max(_base_rate(w, largest) for w in workloads)
    one = budget.simulation_estimate(largest, budget.requests_bound(rate * grid.duration_s), grid.duration_s,
                                     samples=grid.duration_s / DEFAULT_SAMPLE_INTERVAL_S + 2)
    budget.require(budget.sweep_estimate(runs, one, budget.current_job().copies))
    # the grid resumes when stopped, so its total time is announced; each run is held to the limit
    budget.require(budget.Estimate(one.bytes, one.seconds, f"its largest run, of {one.what}"))


def _base_rate(workload: WorkloadPoint, served: int) -> float:
    """The layout's total base rate at `served` adapters (rate levels go round-robin)."""
    if workload.layout == "zipf":
        return float(workload.zipf_total_rate_req_s or 0.0)
    levels = workload.rate_levels
    full_cycles, extra = divmod(served, len(levels))
    return full_cycles * math.fsum(levels) + math.fsum(levels[:extra])


def _starts(profile: Profile, max_loras: int, max_lora_rank: int, source: str) -> bool:
    try:
        profile.kv.tokens(max_loras, max_lora_rank)
    except InfeasibleConfigError:
        return False
    except InputError as err:
        raise InputError(f"{source}: max_loras {max_loras} with max_lora_rank {max_lora_rank}: {err}") from None
    return True


def _slice_text(part: slice) -> str:
    text = ":".join("" if v is None else str(v) for v in (part.start, part.stop, part.step))
    return text.removesuffix(":")


def parse_slice(text: str) -> slice:
    """`START:STOP[:STEP]` (Python slice syntax, each part optional) or a count N meaning `:N`."""
    parts = text.split(":")
    try:
        numbers = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise InputError(f"--workloads: expected START:STOP[:STEP] or a count, got {text!r}") from None
    if len(numbers) == 1:
        return slice(None, numbers[0])
    if len(numbers) > 3 or (len(numbers) == 3 and numbers[2] == 0):
        raise InputError(f"--workloads: expected START:STOP[:STEP] with STEP != 0, got {text!r}")
    return slice(*numbers)
