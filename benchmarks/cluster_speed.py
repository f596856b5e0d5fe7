"""Speed of the cluster twin: N GPUs for one simulated hour, per router (llama profile, seed 0).

Usage: python benchmarks/cluster_speed.py [--gpus 16 64] [--repeats 3] [--workers 2] [--duration 3600]

The cluster: every GPU holds 20 adapters of its own (Poisson, 0.4/0.2/0.1 req/s round-robin, ranks 8
and 16) and 2 hot ones (2 req/s each) that it shares with the next GPU (a ring; routing weights
1/2 each), with --max-loras 8: about 8.7 req/s a GPU, a load the twin serves unstarved (the printed
served share says so). Each router's run is timed whole (requests drawn, routed, every replica
simulated, reports built), after one warm-up on a short window; the median of `repeats` is printed
with the share of requests the router had to decide (those of shared adapters).
"""

from __future__ import annotations

import argparse
import statistics
import time

OWN, SHARED, HOT_RATE, MAX_LORAS = 20, 2, 2.0, 8
LEVELS, RANKS = (0.4, 0.2, 0.1), (8, 16)


def ring_cluster(n_gpus: int):
    from loratwin.twin import ServerConfig
    from loratwin.twin.cluster import ClusterSpec, Replica
    from loratwin.workload import AdapterSpec, WorkloadSpec

    adapters, held = [], [[] for _ in range(n_gpus)]
    routing: dict[str, dict[int, float]] = {}
    for g in range(n_gpus):
        for k in range(OWN):
            a = AdapterSpec(id=f"g{g}-a{k}", rank=RANKS[k % len(RANKS)], rate_req_s=LEVELS[k % len(LEVELS)])
            adapters.append(a)
            held[g].append(a.id)
            routing[a.id] = {g: 1.0}
        for k in range(SHARED):
            a = AdapterSpec(id=f"g{g}-hot{k}", rank=RANKS[k % len(RANKS)], rate_req_s=HOT_RATE)
            adapters.append(a)
            other = (g + 1) % n_gpus
            held[g].append(a.id)
            held[other].append(a.id)
            routing[a.id] = {g: 0.5, other: 0.5}
    server = ServerConfig(max_loras=MAX_LORAS)
    replicas = tuple(Replica(f"GPU {g}", server, tuple(held[g])) for g in range(n_gpus))
    return ClusterSpec(WorkloadSpec(adapters=tuple(adapters)), replicas, routing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--routers", nargs="+", default=["weighted-random", "least-outstanding", "affinity"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=3600.0)
    args = parser.parse_args()
    from loratwin.twin.cluster import simulate_cluster

    print(f"{'GPUs':>5} {'router':18} {'median s':>9} {'runs s':>24} {'requests':>9} {'decided':>8} "
          f"{'served':>7} {'starved GPUs':>12}")
    for n in args.gpus:
        spec = ring_cluster(n)
        for router in args.routers:
            def once(duration_s: float, spec=spec, router=router):
                return simulate_cluster(spec, "llama-3.1-8b-instruct", router=router, duration_s=duration_s,
                                        seed=0, workers=args.workers)
            once(30.0)  # warm-up: loads the compiled engine
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                result = once(args.duration)
                times.append(time.perf_counter() - t0)
            decided = sum(len(spec.routing[a]) > 1 for a in (spec.workload.adapters[i].id for i in result.request_adapter))
            runs = ", ".join(f"{t:.1f}" for t in times)
            print(f"{n:5} {router:18} {statistics.median(times):9.2f} {runs:>24} {len(result.routes):9,} "
                  f"{decided / len(result.routes):8.1%} {result.served_share:7.1%} {len(result.starved_gpus):12}",
                  flush=True)


if __name__ == "__main__":
    main()
