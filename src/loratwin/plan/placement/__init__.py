"""Placement over GPUs: algorithms (`algorithms.ALGORITHMS`, a registry), the fill they share
with recommendation (`fill`), the search and balancing moves, results and twin verification."""

from loratwin.plan.placement.algorithms import ALGORITHMS, EXACT_MAX_ADAPTERS
from loratwin.plan.placement.place import COMPARED, as_workload, compare_algorithms, lower_bound, place
from loratwin.plan.placement.result import GpuPlan, Placement
from loratwin.plan.placement.search import DEFAULT_SEARCH_MOVES
from loratwin.plan.placement.shares import ShareJudge
from loratwin.plan.placement.verify import Verification, VerifiedGpu, verify_placement

__all__ = [
    "ALGORITHMS", "COMPARED", "DEFAULT_SEARCH_MOVES", "EXACT_MAX_ADAPTERS", "GpuPlan", "Placement", "ShareJudge",
    "Verification", "VerifiedGpu", "as_workload", "compare_algorithms", "lower_bound", "place", "verify_placement",
]
