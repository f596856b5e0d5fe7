"""A cluster of vLLM replicas behind a router, simulated together over one window."""

from loratwin.twin.cluster.report import ClusterResult
from loratwin.twin.cluster.run import check_cluster_run, simulate_cluster
from loratwin.twin.cluster.spec import DEFAULT_SPILL_THRESHOLD, ROUTERS, ClusterSpec, Replica, even_routing

__all__ = ["DEFAULT_SPILL_THRESHOLD", "ROUTERS", "ClusterResult", "ClusterSpec", "Replica", "check_cluster_run",
           "even_routing", "simulate_cluster"]
