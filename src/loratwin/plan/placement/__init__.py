"""Placement over GPUs: algorithms (`algorithms.ALGORITHMS`, a registry), the fill they share
with recommendation (`fill`), the search and balancing moves, results and twin verification, and
re-placement from a running placement with the fewest adapters moved (`replace`)."""

from loratwin.plan.placement.algorithms import ALGORITHMS, EXACT_MAX_ADAPTERS
from loratwin.plan.placement.moves import Move, Running
from loratwin.plan.placement.place import COMPARED, as_workload, compare_algorithms, lower_bound, place
from loratwin.plan.placement.replace import Replacement, replace
from loratwin.plan.placement.result import GpuPlan, Placement
from loratwin.plan.placement.search import DEFAULT_SEARCH_MOVES
from loratwin.plan.placement.shares import ShareJudge
from loratwin.plan.placement.verify import Verification, VerifiedGpu, verify_placement

__all__ = [
    "ALGORITHMS", "COMPARED", "DEFAULT_SEARCH_MOVES", "EXACT_MAX_ADAPTERS", "GpuPlan", "Move", "Placement",
    "Replacement", "Running", "ShareJudge", "Verification", "VerifiedGpu", "as_workload", "compare_algorithms",
    "lower_bound", "place", "replace", "verify_placement",
]
