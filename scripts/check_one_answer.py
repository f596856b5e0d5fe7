"""Do `recommend` and `place` give one answer? On random adapter lists (Zipf-like rates of random
skew, random rank mixes, 2-400 adapters, 1-120 req/s in total), count the lists where:

1. all adapters fit on one GPU by `recommend` exactly when `place` uses one GPU;
2. the adapters `recommend` serves, given to `place`, land on one GPU with the same --max-loras.

    python scripts/check_one_answer.py --lists 200 [--keep-order] [--max-wait 60]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from loratwin import AdapterSpec, InputError, load_profile
from loratwin.plan import AcceptanceRule, make_check, place, recommend
from loratwin.workload import WorkloadSpec


def random_list(rng: np.random.Generator) -> WorkloadSpec:
    n = int(rng.integers(2, 401))
    total = float(rng.uniform(1.0, 120.0))
    weights = 1.0 / np.arange(1, n + 1) ** rng.uniform(0.0, 1.5)
    rates = rng.permutation(weights / weights.sum() * total)
    ranks = rng.choice([8, 16, 32], size=n, p=rng.dirichlet(np.ones(3)))
    return WorkloadSpec(adapters=tuple(AdapterSpec(id=f"a{i}", rank=int(r), rate_req_s=max(1e-3, round(float(x), 4)))
                                       for i, (r, x) in enumerate(zip(ranks, rates))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="llama-3.1-8b-instruct")
    parser.add_argument("--keep-order", action="store_true")
    parser.add_argument("--max-wait", type=float, default=60.0, help="'inf': no wait limit")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    rule = AcceptanceRule(max_wait_s=None if args.max_wait == float("inf") else args.max_wait)
    rng = np.random.default_rng(args.seed)
    fit_agree = same_gpu = skipped = 0
    started = time.perf_counter()
    for k in range(args.lists):
        workload = random_list(rng)
        check = make_check("cost-model", profile, workload.lengths, rule=rule)
        try:
            rec = recommend(workload, profile, check=check, keep_order=args.keep_order, published=False)
            everything = place(workload, profile, check=check)
        except InputError as err:  # an adapter too busy for one GPU: place refuses the list
            skipped += 1
            print(f"list {k}: skipped ({err})")
            continue
        fit_agree += (rec.served == len(workload.adapters)) == (everything.gpu_count == 1)
        served = set(rec.served_adapter_ids)
        alone = place([a for a in workload.adapters if a.id in served], profile, check=check)
        ok = alone.gpu_count == 1 and alone.gpus[0].max_loras == rec.max_loras
        same_gpu += ok
        if not ok:
            print(f"list {k}: recommend served {rec.served} at --max-loras {rec.max_loras}; place used "
                  f"{alone.gpu_count} GPUs, --max-loras {[g.max_loras for g in alone.gpus]}")
    judged = args.lists - skipped
    print(f"{judged} random lists ({skipped} skipped: an adapter too busy for one GPU), "
          f"{time.perf_counter() - started:.0f} s")
    print(f"  all fit on one GPU (recommend) <=> one GPU (place): {fit_agree} of {judged}")
    print(f"  recommend's adapters placed on one GPU with the same --max-loras: {same_gpu} of {judged}")


if __name__ == "__main__":
    main()
