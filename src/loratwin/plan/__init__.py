"""Planning: which configuration for one GPU, and which adapters on which GPU.

- `judge/`: is one GPU's configuration acceptable? The acceptance rule (`judge.rule`) and the
  estimators whose predictions it judges (cost model, learned models, twin).
- `placement/`: adapters over GPUs (algorithms by name, search, spreading, twin verification).
- `bound/`: lower bounds on the GPU count.
- `recommend/`: one GPU (placement on one GPU), refined and verified with the twin.
- `inputs`: reading adapter lists.
"""

from loratwin.plan.inputs import load_adapters, read_adapters_csv, write_adapters_csv
from loratwin.plan.judge import AcceptanceRule, GpuVerdict, make_check
from loratwin.plan.placement import Placement, compare_algorithms, lower_bound, place, verify_placement
from loratwin.plan.recommend import Recommendation, recommend

__all__ = [
    "AcceptanceRule", "GpuVerdict", "Placement", "Recommendation", "compare_algorithms", "load_adapters",
    "lower_bound", "make_check", "place", "read_adapters_csv", "recommend", "verify_placement",
    "write_adapters_csv",
]
