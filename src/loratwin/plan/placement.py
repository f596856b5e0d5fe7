"""Placement: which adapters go on which GPU, with which vLLM flags, on as few GPUs as possible
without starving requests.

    from loratwin.plan.placement import place, verify_placement
    placement = place(adapters, "llama-3.1-8b-instruct")          # greedy, fewest GPUs
    placement = place(adapters, "llama-3.1-8b-instruct", gpus=8)  # best spread over 8 GPUs
    print("\\n".join(placement.vllm_serve_commands()))
    report = verify_placement(placement, "llama-3.1-8b-instruct")  # the twin on every GPU

Every algorithm judges a GPU's share through a `GpuCheck` (see `place_checks`): the same check
for all of them, so their GPU counts compare. Each GPU serves its adapters with
`max_cpu_loras` = its adapter count (all preloaded in CPU memory, as in the reference runs),
`max_lora_rank` = the smallest the profile knows that admits its largest rank, and the
`max_loras` the check prefers.

Algorithms:
- greedy (the follow-up paper's): adapters grouped by rank, largest rank first; inside a group
  ordered alternately high and low rate; each GPU takes the next adapters in that order, as many
  as the check accepts (probing growing counts), at the max_loras with the best predicted throughput.
- round-robin: adapter i on GPU i mod N.
- least-loaded (dLoRA-like): busiest adapters first, each on the GPU with the least offered load.
- rank-grouped (LoRAServe-like): one pool of GPUs per rank, least-loaded inside each pool.
- exact: branch and bound over all assignments (up to EXACT_MAX_ADAPTERS adapters): the fewest
  GPUs the check allows.
Baselines have no GPU count of their own: without `gpus`, each gets the fewest GPUs at which its
assignment passes the check on every GPU.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loratwin.errors import InputError
from loratwin.plan.place_balance import even_out
from loratwin.plan.place_checks import (
    CostModelCheck,
    GpuCheck,
    GpuVerdict,
    SlotOption,
    TwinCheck,
    adapter_server_rank,
    default_check,
)
from loratwin.plan.place_search import DEFAULT_SEARCH_MOVES, free_gpus
from loratwin.profiles import Profile, load_profile
from loratwin.twin.config import (
    DEFAULT_MAX_NUM_BATCHED_TOKENS,
    DEFAULT_MAX_NUM_SEQS,
    REFERENCE_CLIENT_MAX_WAITING,
)
from loratwin.workload import (
    AdapterSpec,
    LengthSpec,
    PoissonArrival,
    ShareGPTLengths,
    WorkloadSpec,
)

# halvings of the bracket on the single-adapter capacity: within 0.03%
CAPACITY_BISECTIONS = 12
ALGORITHMS = ("greedy", "round-robin", "least-loaded", "rank-grouped", "exact")
EXACT_MAX_ADAPTERS = 12
# GPUs whose starvation risks differ by more than this are pointed to --gpus, which evens them.
UNEVEN_RISK = 0.3
# How far the greedy may inflate rates to spread adapters over more GPUs than it needs.
SPREAD_MAX_SCALE = 16.0
# ... found to within this factor: a margin of a few percent is all the spread is for
SPREAD_TOLERANCE = 1.05
# ... searched from an estimate, upward by at least this factor until a fill no longer fits
SPREAD_STEP = 1.1
# moves evening out the spread GPUs may make, per GPU (each pairs the most and least strained)
EVEN_MOVES_PER_GPU = 3


@dataclass(frozen=True)
class GpuPlan:
    """One GPU of a placement: its adapters and its vLLM configuration, with the check's prediction."""

    index: int
    adapters: tuple[AdapterSpec, ...]
    max_loras: int
    max_lora_rank: int
    predicted_tok_s: float
    offered_tok_s: float
    starvation_risk: float
    starved: bool  # as predicted by the check
    wait_s: float = 0.0  # predicted mean wait for a place in the batch (cost-model check)
    queue_s: float = 0.0  # predicted mean wait of every request for KV admission (cost-model check)

    @property
    def max_cpu_loras(self) -> int:
        return len(self.adapters)

    @property
    def lora_flags(self) -> str:
        """Its adapter flags for `vllm serve`."""
        return f"--max-loras {self.max_loras} --max-cpu-loras {self.max_cpu_loras} --max-lora-rank {self.max_lora_rank}"

    @property
    def rate_req_s(self) -> float:
        return math.fsum(a.rate_req_s for a in self.adapters)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.index,
            "adapters": [a.id for a in self.adapters],
            "served": len(self.adapters),
            "max_loras": self.max_loras,
            "max_cpu_loras": self.max_cpu_loras,
            "max_lora_rank": self.max_lora_rank,
            "rate_req_s": self.rate_req_s,
            "offered_tok_s": self.offered_tok_s,
            "predicted_tok_s": self.predicted_tok_s,
            "starvation_risk": self.starvation_risk,
            "predicted_wait_s": self.wait_s,
            "predicted_kv_queue_s": self.queue_s,
            "predicted_starved": self.starved,
        }


@dataclass
class Placement:
    """Adapters over GPUs, each GPU with its flags; `vllm_serve_commands()` gives one command per GPU."""

    profile: str
    model: str
    algorithm: str
    check: str
    gpus: list[GpuPlan]
    lower_bound: int
    elapsed_s: float
    requested_gpus: int | None = None
    notes: list[str] = field(default_factory=list)
    lengths: LengthSpec | ShareGPTLengths = field(default_factory=ShareGPTLengths)
    arrival: Any = field(default_factory=PoissonArrival)

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def predicted_tok_s(self) -> float:
        return math.fsum(g.predicted_tok_s for g in self.gpus)

    @property
    def offered_tok_s(self) -> float:
        return math.fsum(g.offered_tok_s for g in self.gpus)

    @property
    def predicted_starved_gpus(self) -> list[int]:
        return [g.index for g in self.gpus if g.starved]

    @property
    def proven_fewest(self) -> bool:
        """The cost-model bound holds for every placement that check accepts: a count that meets
        it is the fewest possible."""
        return self.check == "cost-model" and self.gpu_count == self.lower_bound

    def assignment(self) -> dict[str, int]:
        """Adapter id -> GPU index."""
        return {a.id: g.index for g in self.gpus for a in g.adapters}

    def vllm_serve_commands(self, model: str | None = None, path_template: str = "/path/to/{adapter_id}") -> list[str]:
        """One `vllm serve` command line per GPU. Adapter paths are placeholders built from
        `path_template`; the queue and batch flags are those the prediction assumed."""
        commands = []
        for g in self.gpus:
            modules = " ".join(f"{a.id}={path_template.format(adapter_id=a.id)}" for a in g.adapters)
            commands.append(
                f"vllm serve {model or self.model} --enable-lora {g.lora_flags} "
                f"--max-num-seqs {DEFAULT_MAX_NUM_SEQS} --max-num-batched-tokens {DEFAULT_MAX_NUM_BATCHED_TOKENS} "
                f"--no-enable-prefix-caching --lora-modules {modules}"
            )
        return commands

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "model": self.model,
            "algorithm": self.algorithm,
            "check": self.check,
            "gpu_count": self.gpu_count,
            "requested_gpus": self.requested_gpus,
            "lower_bound_gpus": self.lower_bound,
            "adapters": sum(len(g.adapters) for g in self.gpus),
            "offered_tok_s": self.offered_tok_s,
            "predicted_tok_s": self.predicted_tok_s,
            "predicted_starved_gpus": self.predicted_starved_gpus,
            "elapsed_s": self.elapsed_s,
            "notes": list(self.notes),
            "gpus": [g.to_dict() for g in self.gpus],
            "vllm_serve_commands": self.vllm_serve_commands(),
        }


# --- inputs -------------------------------------------------------------------------------------


def _as_workload(adapters: Sequence[AdapterSpec] | WorkloadSpec) -> WorkloadSpec:
    if isinstance(adapters, WorkloadSpec):
        return adapters
    adapters = tuple(adapters)
    if not adapters:
        raise InputError("no adapters to place")
    try:
        return WorkloadSpec(adapters=adapters)
    except ValueError as err:  # pydantic's ValidationError: duplicate ids
        raise InputError(f"adapters: {err}") from None


def _resolve_profile(profile: Profile | str) -> Profile:
    return load_profile(profile) if isinstance(profile, str) else profile


# --- shared machinery ---------------------------------------------------------------------------


class _Judge:
    """The check, memoised by the exact adapter tuple (algorithms revisit the same shares)."""

    def __init__(self, check: GpuCheck, profile: Profile, adapters: Sequence[AdapterSpec]) -> None:
        self.check = check
        self.profile = profile
        self.adapters = list(adapters)
        self.calls = 0
        self._memo: dict[tuple[int, ...], GpuVerdict] = {}
        self._fast = isinstance(check, CostModelCheck)
        if self._fast:
            self._rates = np.array([a.rate_req_s for a in self.adapters], np.float64)
            self._ranks = [a.rank for a in self.adapters]

    def __call__(self, members: Sequence[int]) -> GpuVerdict:
        key = tuple(sorted(members))
        verdict = self._memo.get(key)
        if verdict is None:
            self.calls += 1
            if self._fast:
                idx = np.fromiter(key, np.int64, len(key))
                verdict = self.check.evaluate_arrays(self._rates[idx], [self._ranks[i] for i in key], self.profile)
            else:
                verdict = self.check.evaluate([self.adapters[i] for i in key], self.profile)
            self._memo[key] = verdict
        return verdict

    def ok(self, members: Sequence[int]) -> bool:
        return self(members).ok


def _alternate_high_low(indices: list[int], rates: Sequence[float]) -> list[int]:
    """Highest rate, lowest, second highest, second lowest, ..."""
    by_rate = sorted(indices, key=lambda i: (-rates[i], i))
    out, lo, hi = [], 0, len(by_rate) - 1
    while lo <= hi:
        out.append(by_rate[lo])
        if lo != hi:
            out.append(by_rate[hi])
        lo += 1
        hi -= 1
    return out


def _largest_prefix(sequence: Sequence[int], accepts: Callable[[Sequence[int]], bool], hint: int = 1) -> int:
    """The largest k with accepts(sequence[:k]), probing growing counts from `hint` then bisecting
    (acceptance is taken as monotone: more adapters never make a GPU safer). 0 if not even one."""
    n = len(sequence)
    k = max(1, min(hint, n))
    if accepts(sequence[:k]):
        good = k
        bad = n + 1
        while good < n:
            probe = min(n, good * 2)
            if accepts(sequence[:probe]):
                good = probe
            else:
                bad = probe
                break
    else:
        good, bad = 0, k
        if k > 1:
            # shrink fast, then bisect
            probe = k // 2
            while probe >= 1 and not accepts(sequence[:probe]):
                bad = probe
                probe //= 2
            good = probe
    while bad - good > 1:
        mid = (good + bad) // 2
        if accepts(sequence[:mid]):
            good = mid
        else:
            bad = mid
    return good


def _rank_groups(adapters: Sequence[AdapterSpec]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, a in enumerate(adapters):
        groups.setdefault(a.rank, []).append(i)
    return dict(sorted(groups.items(), key=lambda kv: -kv[0]))


def _check_each_alone(judge: _Judge, adapters: Sequence[AdapterSpec]) -> None:
    """Refuse adapters that no single GPU can serve: the busiest of each rank alone (a quieter one
    of the same rank only fits better)."""
    for members in _rank_groups(adapters).values():
        hottest = max(members, key=lambda i: adapters[i].rate_req_s)
        verdict = judge([hottest])
        if not verdict.ok:
            a = adapters[hottest]
            why = verdict.reason or "it starves even alone on a GPU at every max_loras"
            raise InputError(
                f"adapter {a.id!r} (rank {a.rank}, {a.rate_req_s:g} req/s) cannot be placed on one GPU "
                f"of profile {judge.profile.name}: {why}. Serve it from several replicas (split its traffic) "
                "and list each replica as its own adapter."
            )


# --- lower bound --------------------------------------------------------------------------------


def lower_bound(adapters: Sequence[AdapterSpec] | WorkloadSpec, profile: Profile | str,
                check: GpuCheck | None = None) -> int:
    """A lower bound on the GPUs any placement needs under `check`.

    Adapters that need max_lora_rank R can only go on GPUs with a rank >= R, and a GPU with rank R
    carries at most C_R offered tok/s without starving: C_R is the load of the busiest single
    adapter the check accepts at that rank (more adapters only add LoRA work, slots and loads).
    Covering each rank's load needs at least sum_R load_R / C_R GPUs. A check may add its own
    bound (`lower_bound_gpus`); the larger is kept (the cost-model check's is the linear
    relaxation of all its per-GPU conditions, `loratwin.plan.place_bound`, and was the larger on
    every workload tried).
    Memory enters through the check (which max_loras start at each rank); CPU memory is not limited.
    """
    workload = _as_workload(adapters)
    profile = _resolve_profile(profile)
    check = check or default_check(profile, workload.lengths)
    return _lower_bound(list(workload.adapters), profile, check)


def _lower_bound(adapters: list[AdapterSpec], profile: Profile, check: GpuCheck) -> int:
    needs: dict[int, list[AdapterSpec]] = {}
    for a in adapters:
        needs.setdefault(adapter_server_rank(profile, a), []).append(a)
    gpus = 0.0
    for rank, members in needs.items():
        rate = math.fsum(a.rate_req_s for a in members)
        if rate <= 0:
            continue
        # offered tok/s per req/s is the mean request size, the same for every adapter: rates suffice
        gpus += rate / _single_adapter_capacity(rank, profile, check, members[0])
    fluid = getattr(check, "lower_bound_gpus", None)
    if fluid is not None:
        gpus = max(gpus, fluid(adapters, profile))
    return max(1, math.ceil(gpus - 1e-9))


def _single_adapter_capacity(rank: int, profile: Profile, check: GpuCheck, like: AdapterSpec) -> float:
    """The req/s of the busiest single adapter of this rank the check accepts, from above (within
    2^-CAPACITY_BISECTIONS of it): the most a GPU carries (more adapters only add LoRA work, slots
    and loads)."""

    def verdict(rate: float) -> GpuVerdict:
        return check.evaluate([like.model_copy(update={"id": "probe", "rank": rank, "rate_req_s": rate})], profile)

    lo, hi = 0.0, 1.0
    while verdict(hi).ok:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise InputError(f"the {check.name} check accepts any load at max_lora_rank {rank}: no lower bound")
    for _ in range(CAPACITY_BISECTIONS):
        mid = (lo + hi) / 2
        if verdict(mid).ok:
            lo = mid
        else:
            hi = mid
    if lo <= 0:
        raise InputError(f"no adapter fits on one GPU at max_lora_rank {rank} under the {check.name} check")
    return hi  # at least the capacity (refused), so that rate / capacity stays a lower bound


# --- algorithms ---------------------------------------------------------------------------------


def _greedy(judge: _Judge, adapters: Sequence[AdapterSpec], max_bins: int | None = None) -> list[list[int]] | None:
    """The greedy's bins; with `max_bins`, None as soon as it needs more (the rest is not placed)."""
    rates = [a.rate_req_s for a in adapters]
    sequence: list[int] = []
    for members in _rank_groups(adapters).values():
        sequence.extend(_alternate_high_low(members, rates))
    bins: list[list[int]] = []
    start, hint = 0, 1
    while start < len(sequence):
        if max_bins is not None and len(bins) == max_bins:
            return None
        rest = sequence[start:]
        k = _largest_prefix(rest, judge.ok, hint)
        if k == 0:
            a = adapters[rest[0]]
            raise InputError(f"adapter {a.id!r} does not fit on one GPU under the {judge.check.name} check")
        bins.append(rest[:k])
        start += k
        hint = k
    return bins


def _scaled_judge(judge: _Judge, adapters: Sequence[AdapterSpec], scale: float) -> _Judge:
    scaled = [a.model_copy(update={"rate_req_s": a.rate_req_s * scale}) for a in adapters]
    return _Judge(judge.check, judge.profile, scaled)


def _round_robin(n_gpus: int, adapters: Sequence[AdapterSpec]) -> list[list[int]]:
    return [list(range(g, len(adapters), n_gpus)) for g in range(n_gpus)]


def _least_loaded(n_gpus: int, adapters: Sequence[AdapterSpec], members: Sequence[int] | None = None) -> list[list[int]]:
    members = list(range(len(adapters))) if members is None else list(members)
    bins: list[list[int]] = [[] for _ in range(n_gpus)]
    load = [0.0] * n_gpus
    for i in sorted(members, key=lambda i: (-adapters[i].rate_req_s, i)):
        g = min(range(n_gpus), key=lambda g: (load[g], len(bins[g]), g))
        bins[g].append(i)
        load[g] += adapters[i].rate_req_s
    return bins


def _all_ok(judge: _Judge, bins: list[list[int]]) -> bool:
    return all(judge.ok(b) for b in bins if b)


def _fewest(assign: Callable[[int], list[list[int]]], judge: _Judge, start: int, limit: int) -> tuple[int, list[list[int]]] | None:
    """The smallest GPU count from `start` whose assignment passes the check on every GPU."""
    for n in range(max(1, start), limit + 1):
        bins = assign(n)
        if _all_ok(judge, bins):
            return n, bins
    return None


def _rank_grouped_fewest(judge: _Judge, adapters: Sequence[AdapterSpec]) -> dict[int, int] | None:
    counts = {}
    for rank, members in _rank_groups(adapters).items():
        found = _fewest(functools.partial(_least_loaded, adapters=adapters, members=members), judge, 1, len(members))
        if found is None:
            return None
        counts[rank] = found[0]
    return counts


def _rank_grouped(counts: dict[int, int], adapters: Sequence[AdapterSpec]) -> list[list[int]]:
    bins = []
    for rank, members in _rank_groups(adapters).items():
        bins.extend(_least_loaded(counts[rank], adapters, members))
    return bins


def _spread_rank_groups(counts: dict[int, int], n_gpus: int, adapters: Sequence[AdapterSpec]) -> dict[int, int]:
    """Extra GPUs go one by one to the rank pool with the most load per GPU."""
    counts = dict(counts)
    loads = {r: math.fsum(adapters[i].rate_req_s for i in m) for r, m in _rank_groups(adapters).items()}
    sizes = {r: len(m) for r, m in _rank_groups(adapters).items()}
    while sum(counts.values()) < n_gpus:
        open_pools = [r for r in counts if counts[r] < sizes[r]]
        if not open_pools:
            break
        r = max(open_pools, key=lambda r: (loads[r] / counts[r], r))
        counts[r] += 1
    return counts


def _exact(judge: _Judge, n: int, start: int, limit: int) -> list[list[int]] | None:
    """Fewest bins by branch and bound: busiest adapters first, each into an existing bin the check
    still accepts or into the next empty bin (empty bins are interchangeable)."""
    order = sorted(range(n), key=lambda i: -judge.adapters[i].rate_req_s)
    for k in range(max(1, start), limit + 1):
        bins: list[list[int]] = []
        if _branch(judge, order, 0, bins, k):
            return [list(b) for b in bins]
    return None


def _branch(judge: _Judge, order: list[int], pos: int, bins: list[list[int]], k: int) -> bool:
    if pos == len(order):
        return True
    i = order[pos]
    for b in bins:
        b.append(i)
        if judge.ok(b) and _branch(judge, order, pos + 1, bins, k):
            return True
        b.pop()
    if len(bins) < k:
        bins.append([i])
        if judge.ok(bins[-1]) and _branch(judge, order, pos + 1, bins, k):
            return True
        bins.pop()
    return False


# --- the entry point ----------------------------------------------------------------------------


def _plan(index: int, members: Sequence[int], adapters: Sequence[AdapterSpec], judge: _Judge) -> GpuPlan:
    verdict = judge(members)
    option: SlotOption | None = verdict.best or verdict.fallback()
    if option is None or verdict.max_lora_rank is None:
        raise InputError(f"GPU {index}: no configuration starts ({verdict.reason or 'out of memory'})")
    ordered = tuple(adapters[i] for i in members)
    return GpuPlan(
        index=index,
        adapters=ordered,
        max_loras=option.max_loras,
        max_lora_rank=verdict.max_lora_rank,
        predicted_tok_s=option.predicted_tok_s,
        offered_tok_s=verdict.offered_tok_s,
        starvation_risk=option.starvation_risk,
        starved=option.starved,
        wait_s=option.wait_s,
        queue_s=option.queue_s,
    )


def _not_enough(gpus: int, needed: int | None, algorithm: str, bound: int) -> InputError:
    if needed is None:
        return InputError(
            f"--gpus {gpus} is not enough: the {algorithm} placement finds no assignment without starvation "
            f"on any GPU count (lower bound: {bound} GPUs)"
        )
    return InputError(
        f"--gpus {gpus} is not enough for these adapters without starvation: the {algorithm} placement "
        f"needs {needed} GPUs (lower bound: {bound})"
    )


def place(
    adapters: Sequence[AdapterSpec] | WorkloadSpec,
    profile: Profile | str,
    gpus: int | None = None,
    algorithm: str = "greedy",
    check: GpuCheck | None = None,
    search_moves: int = DEFAULT_SEARCH_MOVES,
) -> Placement:
    """Place adapters on GPUs. Without `gpus`: the fewest GPUs the algorithm reaches with no GPU
    predicted to starve. With `gpus=N`: the best placement on N GPUs (the greedy spreads the load
    over all N, then `loratwin.plan.place_balance` evens it out), or an InputError saying that N is
    not enough and how many are needed.

    After the greedy, up to `search_moves` moves of one adapter between GPUs try to free GPUs
    (`loratwin.plan.place_search`); 0 keeps the greedy's own placement."""
    started = time.perf_counter()
    if algorithm not in ALGORITHMS:
        raise InputError(f"--algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
        raise InputError(f"--gpus must be an integer >= 1, got {gpus!r}")
    if isinstance(search_moves, bool) or not isinstance(search_moves, int) or search_moves < 0:
        raise InputError(f"--search-moves must be an integer >= 0, got {search_moves!r}")
    workload = _as_workload(adapters)
    profile = _resolve_profile(profile)
    check = check or default_check(profile, workload.lengths)
    items = list(workload.adapters)
    judge = _Judge(check, profile, items)
    _check_each_alone(judge, items)
    notes: list[str] = []
    # the bound does not depend on the placement: it is worked out beside the algorithm (the LP
    # solver and the compiled wait solver let go of the GIL) and waited for where first needed
    with ThreadPoolExecutor(max_workers=1) as beside:
        pending = beside.submit(_lower_bound, items, profile, check)
        bins = _assign(algorithm, judge, items, gpus, search_moves, pending.result, notes)
        bound = pending.result()

    bins = [b for b in bins if b]
    plans = [_plan(i, b, items, judge) for i, b in enumerate(bins)]
    if gpus is not None and len(plans) < gpus:
        notes.append(f"{gpus - len(plans)} of the {gpus} GPUs get no adapter")
    return Placement(
        profile=profile.name,
        model=profile.model,
        algorithm=algorithm,
        check=check.name,
        gpus=plans,
        lower_bound=bound,
        elapsed_s=time.perf_counter() - started,
        requested_gpus=gpus,
        notes=notes,
        lengths=workload.lengths,
        arrival=workload.arrival,
    )


COMPARED = ("greedy", "round-robin", "least-loaded", "rank-grouped")


def compare_algorithms(adapters: Sequence[AdapterSpec] | WorkloadSpec, profile: Profile | str,
                       check: GpuCheck | None = None, skip: str | None = None) -> dict[str, int | str]:
    """The fewest GPUs the greedy (with its search) and each baseline (round-robin, least-loaded,
    rank-grouped) need for these adapters under the same check, or why one cannot place them;
    `skip` leaves one out."""
    counts: dict[str, int | str] = {}
    for algorithm in COMPARED:
        if algorithm == skip:
            continue
        try:
            counts[algorithm] = place(adapters, profile, algorithm=algorithm, check=check).gpu_count
        except InputError as err:
            counts[algorithm] = str(err)
    return counts


def _assign(algorithm: str, judge: _Judge, items: list[AdapterSpec], gpus: int | None, search_moves: int,
            bound: Callable[[], int], notes: list[str]) -> list[list[int]]:
    """The algorithm's bins (lists of adapter indices); `bound()` gives the lower bound."""
    check = judge.check
    n = len(items)

    if algorithm == "greedy":
        bins = _greedy(judge, items)
        target = max(1, bound()) if gpus is None else gpus  # no search below the bound or the GPUs asked for
        # with the twin check every move would cost a hundred simulations: the greedy alone
        if search_moves and len(bins) > target and not isinstance(check, TwinCheck):
            found, moves = free_gpus(judge, [a.rate_req_s for a in items], bins, search_moves, down_to=target)
            if len(found) < len(bins):  # every GPU it returns is accepted (strain <= 1 is ok)
                notes.append(f"a search moving adapters between GPUs freed {len(bins) - len(found)} of the greedy's "
                             f"{len(bins)} GPUs ({moves} moves)")
                bins = found
        if gpus is None:
            notes.extend(_uneven_note(judge, bins))
        elif len(bins) > gpus:
            raise _not_enough(gpus, len(bins), algorithm, bound())
        else:
            bins = _spread_evenly(judge, items, gpus, bins, notes)
    elif algorithm == "exact":
        if n > EXACT_MAX_ADAPTERS:
            raise InputError(f"--algorithm exact places at most {EXACT_MAX_ADAPTERS} adapters, got {n}; use greedy")
        greedy_bins = _greedy(judge, items)
        found = _exact(judge, n, 1, len(greedy_bins))
        bins = found if found is not None else greedy_bins
        if gpus is not None:
            if len(bins) > gpus:
                raise _not_enough(gpus, len(bins), algorithm, bound())
            if len(bins) < gpus:
                notes.append(f"{len(bins)} GPUs suffice; the other {gpus - len(bins)} stay free")
    elif algorithm in ("round-robin", "least-loaded"):
        assign = (lambda k: _round_robin(k, items)) if algorithm == "round-robin" else (lambda k: _least_loaded(k, items))
        if gpus is None:
            found = _fewest(assign, judge, bound(), n)
            if found is None:
                raise InputError(f"the {algorithm} placement starves some GPU even with one adapter per GPU")
            bins = found[1]
        else:
            bins = assign(min(gpus, n))
            if not _all_ok(judge, bins):
                found = _fewest(assign, judge, gpus + 1, n)
                raise _not_enough(gpus, found[0] if found else None, algorithm, bound())
    else:  # rank-grouped
        counts = _rank_grouped_fewest(judge, items)
        if counts is None:
            raise InputError("the rank-grouped placement starves some GPU even with one adapter per GPU")
        if gpus is not None:
            if sum(counts.values()) > gpus:
                raise _not_enough(gpus, sum(counts.values()), algorithm, bound())
            counts = _spread_rank_groups(counts, gpus, items)
        bins = _rank_grouped(counts, items)

    return bins


def _spread_evenly(judge: _Judge, items: Sequence[AdapterSpec], gpus: int, bins: list[list[int]],
                   notes: list[str]) -> list[list[int]]:
    """The greedy's adapters over `gpus` GPUs with the load spread and evened out, also when the
    greedy needs exactly that many: it fills each GPU to its limit in turn and leaves the last one
    the rest."""
    spread, scale = _spread_greedy(judge, items, gpus, bins)
    if scale > 1.0:
        bins = spread
        notes.append(f"spread over {len(bins)} GPUs (fills each as if rates were x{scale:.2f})")
    bins, moves = even_out(judge, bins, EVEN_MOVES_PER_GPU * len(bins))
    if moves:
        notes.append(f"evened out: {moves} moves of adapters from the most to the least strained GPU")
    return bins


def _uneven_note(judge: _Judge, bins: list[list[int]]) -> list[str]:
    """A note pointing to --gpus when the greedy's GPUs are far apart in risk."""
    risks = sorted(judge(b).best.starvation_risk for b in bins)
    if len(risks) < 2 or risks[-1] - risks[0] <= UNEVEN_RISK:
        return []
    return [f"the greedy fills each GPU to its limit in turn (risk {risks[0]:.2f} to {risks[-1]:.2f}); "
            f"--gpus {len(bins)} spreads the load over the same GPUs"]


def _spread_greedy(judge: _Judge, adapters: Sequence[AdapterSpec], gpus: int, bins: list[list[int]]) -> tuple[list[list[int]], float]:
    """Fill GPUs as if every rate were `scale` times higher, with the largest scale that still fits
    on `gpus` GPUs (to within SPREAD_TOLERANCE): the same greedy, with headroom left on every GPU."""

    def fill(scale: float) -> list[list[int]] | None:
        try:
            return _greedy(_scaled_judge(judge, adapters, scale), adapters, max_bins=gpus)
        except InputError:  # some adapter alone no longer fits
            return None

    lo, best = 1.0, bins
    hi: float | None = None  # the least scale found not to fit
    # the GPUs needed grow about in proportion to the scale: start where they would just fill `gpus`
    probe = min(SPREAD_MAX_SCALE, max(SPREAD_TOLERANCE, gpus / _gpus_filled(bins, adapters)))
    while (hi / lo > SPREAD_TOLERANCE) if hi is not None else lo < SPREAD_MAX_SCALE:
        trial = fill(probe)
        if trial is not None:
            lo, best = probe, trial
        else:
            hi = probe
        if hi is not None:
            probe = math.sqrt(lo * hi)
        else:  # every fill fitted so far: estimate again from the last one, at least a step up
            probe = min(SPREAD_MAX_SCALE, lo * max(SPREAD_STEP, gpus / _gpus_filled(best, adapters)))
    return best, lo


def _gpus_filled(bins: list[list[int]], adapters: Sequence[AdapterSpec]) -> float:
    """The greedy's GPUs counted by load: every GPU but the last is full, the last counts by its
    request rate over the others' mean."""
    loads = [sum(adapters[i].rate_req_s for i in b) for b in bins]
    if len(loads) < 2:
        return 1.0
    full = sum(loads[:-1]) / (len(loads) - 1)
    return len(loads) - 1 + (min(1.0, loads[-1] / full) if full > 0 else 1.0)


# --- verification with the twin ---------------------------------------------------------------


@dataclass
class VerifiedGpu:
    index: int
    served: int
    max_loras: int
    offered_tok_s: float
    total_tok_s: float
    throughput_over_offered: float
    starved: bool
    starved_adapters: list[str]
    predicted_tok_s: float
    mean_ttft_s: float | None = None  # None when no request finished
    p99_ttft_s: float | None = None
    # mean TTFT of requests sent while their adapter had none unfinished: the twin's counterpart
    # of the predicted wait for a place in the batch
    idle_start_ttft_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Verification:
    """The twin's run of every GPU of a placement."""

    duration_s: float
    seed: int
    gpus: list[VerifiedGpu]
    elapsed_s: float

    @property
    def starved_gpus(self) -> list[int]:
        return [g.index for g in self.gpus if g.starved]

    @property
    def gpus_with_starved_adapters(self) -> list[int]:
        return [g.index for g in self.gpus if g.starved_adapters]

    @property
    def total_tok_s(self) -> float:
        return math.fsum(g.total_tok_s for g in self.gpus)

    @property
    def offered_tok_s(self) -> float:
        return math.fsum(g.offered_tok_s for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "seed": self.seed,
            "starved_gpus": self.starved_gpus,
            "gpus_with_starved_adapters": self.gpus_with_starved_adapters,
            "total_tok_s": self.total_tok_s,
            "offered_tok_s": self.offered_tok_s,
            "elapsed_s": self.elapsed_s,
            "gpus": [g.to_dict() for g in self.gpus],
        }


def verify_placement(
    placement: Placement,
    profile: Profile | str,
    duration_s: float = 3600.0,
    *,
    seed: int = 0,
    workers: int | None = None,
    client_max_waiting: int | None = REFERENCE_CLIENT_MAX_WAITING,
) -> Verification:
    """Simulate every GPU's share with the twin at its configuration; a GPU starves by the
    published rule (1 - throughput / offered >= 0.1). Runs in parallel on `workers` processes.

    The default window is the reference measurements' hour: only requests finished inside the
    window count, so a short window undercounts GPUs whose requests take tens of seconds (many
    adapters, long steps) and can flag them although they keep up."""
    from loratwin.twin import ServerConfig
    from loratwin.twin.batch import SimulationTask, simulate_many

    started = time.perf_counter()
    profile = _resolve_profile(profile)
    tasks = []
    for g in placement.gpus:
        workload = WorkloadSpec(adapters=g.adapters, lengths=placement.lengths, arrival=placement.arrival)
        server = ServerConfig(max_loras=g.max_loras, max_cpu_loras=g.max_cpu_loras, max_lora_rank=g.max_lora_rank,
                              client_max_waiting=client_max_waiting)
        tasks.append(SimulationTask(workload, server, profile, duration_s=duration_s, seed=seed))
    # the slowest runs first, so that the workers finish together
    order = sorted(range(len(tasks)), key=lambda i: -placement.gpus[i].offered_tok_s)
    results = simulate_many([tasks[i] for i in order], workers=workers or 2)
    by_index = dict(zip(order, results))
    verified = []
    for i, g in enumerate(placement.gpus):
        r = by_index[i]
        verified.append(VerifiedGpu(
            index=g.index,
            served=len(g.adapters),
            max_loras=g.max_loras,
            offered_tok_s=float(r.summary["offered_tok_s"]),
            total_tok_s=r.total_tok_s,
            throughput_over_offered=float(r.summary["throughput_over_offered"]),
            starved=r.starved,
            starved_adapters=r.starved_adapters,
            predicted_tok_s=g.predicted_tok_s,
            mean_ttft_s=r.mean_ttft_s,
            p99_ttft_s=r.p99_ttft_s,
            idle_start_ttft_s=r.idle_start_ttft_s,
        ))
    return Verification(duration_s, seed, verified, time.perf_counter() - started)
