"""The cost-model estimator (`CostModelCheck`): a steady-state queueing model of the twin built
from the profile's cost model."""

from loratwin.plan.judge.cost_model.steady_state import CostModelCheck, kv_queue_share

__all__ = ["CostModelCheck", "kv_queue_share"]
