"""Recommendation for one GPU: placement on one GPU (`one_gpu`), checked and refined with the twin
under the same rule (`twin`), with the published method's answer beside it (`published`)."""

from loratwin.plan.recommend.one_gpu import Recommendation, recommend, vllm_command
from loratwin.plan.recommend.twin import apply_refinement, refine, verify

__all__ = ["Recommendation", "apply_refinement", "recommend", "refine", "verify", "vllm_command"]
