"""Lower bounds on the GPUs any placement needs under an estimator and rule.

Adapters that need max_lora_rank R can only go on GPUs with a rank >= R, and a GPU with rank R
carries at most C_R req/s: the rate of the busiest single adapter the check accepts at that rank
(more adapters only add LoRA work, slots and loads). Covering each rank's load needs at least
sum_R load_R / C_R GPUs, also when adapters are split over GPUs (replicas: a GPU's load is
what it carries, whole adapters or pieces). Some estimators have a tighter bound of their own (`FLUID_BOUNDS`; the
cost model's is the linear relaxation of all its per-GPU conditions, `bound.cost_model`, and was
the larger on every workload tried); the larger is kept. Memory enters through the check (which
max_loras start at each rank); CPU memory is not limited.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from loratwin.errors import InputError
from loratwin.plan.bound.cost_model import cost_model_lower_bound
from loratwin.plan.judge import CostModelCheck, GpuCheck, GpuVerdict, adapter_server_rank
from loratwin.profiles import Profile
from loratwin.workload import AdapterSpec

# halvings of the bracket on the single-adapter capacity: within 0.03%
CAPACITY_BISECTIONS = 12


def _cost_model_bound(check: CostModelCheck, adapters: Sequence[AdapterSpec], profile: Profile,
                      splits: bool) -> float:
    need = np.array([adapter_server_rank(profile, a) for a in adapters], np.float64)
    rates = np.fromiter((a.rate_req_s for a in adapters), np.float64, len(adapters))
    return cost_model_lower_bound(check, rates, need, profile, splits)


# An estimator's own fractional bound, by its type.
FLUID_BOUNDS: dict[type, Callable[[GpuCheck, Sequence[AdapterSpec], Profile, bool], float]] = {
    CostModelCheck: _cost_model_bound,
}


def lower_bound_gpus(adapters: Sequence[AdapterSpec], profile: Profile, check: GpuCheck, splits: bool = True) -> int:
    """The least GPU count any placement `check` accepts can use; with `splits` (the default),
    also any that serves an adapter from several GPUs, its requests divided among them. A check that
    screens with another estimator (`TwinJudgesSlos`) accepts only what its screen accepts: the
    screen's bound holds."""
    check = getattr(check, "screen", check)
    needs: dict[int, list[AdapterSpec]] = {}
    for a in adapters:
        needs.setdefault(adapter_server_rank(profile, a), []).append(a)
    gpus = 0.0
    for rank, members in needs.items():
        rate = math.fsum(a.rate_req_s for a in members)
        if rate <= 0:
            continue
        # offered tok/s per req/s is the mean request size, the same for every adapter: rates suffice
        gpus += rate / single_adapter_capacity(rank, profile, check, members[0])
    fluid = FLUID_BOUNDS.get(type(check))
    if fluid is not None:
        gpus = max(gpus, fluid(check, adapters, profile, splits))
    return max(1, math.ceil(gpus - 1e-9))


def single_adapter_capacity(rank: int, profile: Profile, check: GpuCheck, like: AdapterSpec) -> float:
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
