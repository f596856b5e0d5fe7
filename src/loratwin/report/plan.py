"""Report on a plan: a placement of adapters over GPUs (one GPU for a recommendation).

Input: the dict of `Placement.to_dict()` (what `loratwin place --out FILE` writes, YAML or JSON),
or a recommendation (what `loratwin recommend --json` prints: `Recommendation.to_dict()`), which
`plan_from_recommendation` turns into a plan of one GPU.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from loratwin.errors import InputError
from loratwin.grammar import plural
from loratwin.report.charts import figure, png_bytes, thousands
from loratwin.report.html import Page, integer, num
from loratwin.slo import slo_line

KIND = "plan"


# the keys that tell a recommendation (`recommend --json`) from other JSON
RECOMMENDATION_KEYS = ("served_adapter_ids", "max_loras", "vllm_command")


def plan_from_recommendation(doc: dict[str, Any]) -> dict[str, Any]:
    """A recommendation (`Recommendation.to_dict()`, as `recommend --json` prints it) as a plan of one GPU."""
    gpu = {
        "gpu": 0, "adapters": doc["served_adapter_ids"], "served": doc.get("served"), "max_loras": doc["max_loras"],
        "max_cpu_loras": doc.get("max_cpu_loras"), "max_lora_rank": doc.get("max_lora_rank"),
        "offered_tok_s": doc.get("offered_tok_s"), "predicted_tok_s": doc.get("predicted_total_tok_s"),
        "accepted": doc.get("accepted"), "deciding_limit": doc.get("deciding_limit"),
        "predicted_wait_s": doc.get("predicted_wait_s"), "predicted_kv_queue_s": doc.get("predicted_kv_queue_s"),
        "slos": doc.get("slos") or [],
    }
    return {"profile": doc.get("profile"), "model": doc.get("model_id"),
            "algorithm": f"recommend ({doc.get('source', '?')})", "check": doc.get("check"), "gpus": [gpu],
            "predicted_tok_s": doc.get("predicted_total_tok_s"), "offered_tok_s": doc.get("offered_tok_s"),
            "vllm_serve_commands": [shlex.join(map(str, doc["vllm_command"]))], "notes": doc.get("notes") or []}


def _load(path: Path) -> dict[str, Any] | None:
    """The plan in `path`: a placement, or a recommendation as a plan of one GPU; None for anything else."""
    if not path.is_file() or path.suffix.lower() not in (".yaml", ".yml", ".json"):
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("gpus"), list):
        return data
    if all(k in data for k in RECOMMENDATION_KEYS) and isinstance(data["served_adapter_ids"], list) \
            and isinstance(data["vllm_command"], list):
        return plan_from_recommendation(data)
    return None


def matches(path: Path) -> bool:
    return _load(path) is not None


def write_from_path(path: Path, out_dir: Path) -> Path:
    data = _load(path)
    if data is None:
        raise InputError(f"{path}: expected a placement (YAML or JSON with a 'gpus' list) or a recommendation "
                         "(`recommend --json`)")
    return write_plan_report(data, out_dir)


def _refused(gpu: dict) -> bool:
    return gpu.get("accepted") is False


def _load_chart(gpus: list[dict]) -> bytes:
    labels = [f"GPU {g.get('gpu', i)}" for i, g in enumerate(gpus)]
    offered = np.array([g.get("offered_tok_s") or 0.0 for g in gpus])
    predicted = np.array([g.get("predicted_tok_s") or 0.0 for g in gpus])
    starved = [_refused(g) for g in gpus]
    x = np.arange(len(gpus))
    with figure(height_in=max(3.2, 0.3 * len(gpus) + 2)) as (fig, ax):
        ax.barh(x - 0.2, offered, height=0.4, color="#9ca3af", label="offered")
        ax.barh(x + 0.2, predicted, height=0.4, color=["#dc2626" if s else "#2563eb" for s in starved],
                label="predicted throughput")
        ax.set_yticks(x, labels)
        ax.invert_yaxis()
        ax.set_xlabel("tokens per second")
        ax.set_title("Load per GPU")
        thousands(ax, "x")
        ax.legend(loc="lower right")
        return png_bytes(fig)


def _adapters_chart(gpus: list[dict]) -> bytes:
    labels = [f"GPU {g.get('gpu', i)}" for i, g in enumerate(gpus)]
    served = np.array([g.get("served") or len(g.get("adapters", ())) for g in gpus])
    slots = np.array([g.get("max_loras") or 0 for g in gpus])
    x = np.arange(len(gpus))
    with figure(height_in=max(3.2, 0.3 * len(gpus) + 2)) as (fig, ax):
        ax.barh(x - 0.2, served, height=0.4, color="#0d9488", label="adapters served (--max-cpu-loras)")
        ax.barh(x + 0.2, slots, height=0.4, color="#f59e0b", label="GPU slots (--max-loras)")
        ax.set_yticks(x, labels)
        ax.invert_yaxis()
        ax.set_xlabel("adapters")
        ax.set_title("Adapters and GPU slots per GPU")
        ax.legend(loc="lower right")
        return png_bytes(fig)


def write_plan_report(plan: dict[str, Any], out_dir: str | Path) -> Path:
    """index.html (self-contained) and PNGs in out_dir for a placement or recommendation dict."""
    gpus = plan.get("gpus") or []
    if not gpus:
        raise InputError("the plan has no GPUs to report on")
    n_adapters = sum(g.get("served") or len(g.get("adapters", ())) for g in gpus)
    title = (f"{n_adapters:,} adapters on {len(gpus)} GPU{'s' if len(gpus) != 1 else ''}")
    subtitle = [f"profile {plan.get('profile', '?')}" + (f", model {plan['model']}" if plan.get("model") else "")]
    if plan.get("algorithm"):
        subtitle.append(f"placed by {plan['algorithm']}, checked by {plan.get('check', '?')}")
    page = Page(title=title, kind=KIND, subtitle=subtitle)
    refused = [g for g in gpus if _refused(g)]
    if refused:
        page.verdict(f"{len(refused)} of {plural(len(gpus), 'GPU')} break a limit of the acceptance rule.", "bad")
    else:
        page.verdict("Every GPU is predicted to meet every limit of the acceptance rule.", "good")
    for note in plan.get("notes") or ():  # who judges what (the twin judging SLOs), how the load is spread
        page.text(f"Note: {note}")
    cards = [
        ("GPUs", f"{len(gpus)}", f"lower bound {plan['lower_bound_gpus']}" if plan.get("lower_bound_gpus") else None, "neutral"),
        ("adapters", f"{n_adapters:,}", None, "neutral"),
    ]
    if plan.get("predicted_tok_s") is not None:
        cards.append(("predicted throughput", f"{plan['predicted_tok_s']:,.0f} tok/s",
                      f"of {plan['offered_tok_s']:,.0f} tok/s offered" if plan.get("offered_tok_s") else None, "good"))
    page.cards(cards)
    page.section("Load per GPU", "Offered load (tokens per second asked by its adapters) against the throughput "
                 "predicted for its configuration; a red bar is a GPU that breaks a limit.")
    page.chart("load", _load_chart(gpus), alt="Offered load and predicted throughput per GPU")
    page.chart("adapters", _adapters_chart(gpus), alt="Adapters served and GPU slots per GPU")
    slos = any(g.get("slos") for g in gpus)
    page.section("Configuration per GPU")
    page.table(
        ["GPU", "adapters", "--max-loras", "--max-cpu-loras", "--max-lora-rank", "rate (req/s)",
         "offered (tok/s)", "predicted (tok/s)", "wait for a batch place (s)", "KV queue (s)", "tightest limit",
         *(["SLOs (value of limit)"] if slos else [])],
        [[str(g.get("gpu", i)), integer(g.get("served") or len(g.get("adapters", ()))), integer(g.get("max_loras")),
          integer(g.get("max_cpu_loras")), integer(g.get("max_lora_rank")), num(g.get("rate_req_s"), 2),
          num(g.get("offered_tok_s"), 0), num(g.get("predicted_tok_s"), 0), num(g.get("predicted_wait_s"), 1),
          num(g.get("predicted_kv_queue_s"), 1), str(g.get("deciding_limit") or "-")]
         + ([slo_line(g.get("slos") or ()) or "-"] if slos else []) for i, g in enumerate(gpus)],
        row_tones=["bad" if _refused(g) else None for g in gpus],
    )
    page.table(["GPU", "adapters"], [[str(g.get("gpu", i)), ", ".join(map(str, g.get("adapters", ())))]
                                      for i, g in enumerate(gpus)], collapsed="Adapters on each GPU")
    compared = plan.get("compare") or {}
    if compared:  # `place --compare`: the other algorithms' fewest GPUs under the same check
        page.section("Other algorithms", "The fewest GPUs each needs for the same adapters under the same check.")
        page.table(["algorithm", "GPUs"],
                   [[plan.get("algorithm", "this placement") + " (this placement)", integer(len(gpus))]]
                   + [[name, integer(count) if isinstance(count, int) else str(count)] for name, count in compared.items()])
    commands = plan.get("vllm_serve_commands") or []
    if commands:
        page.section("vLLM commands", "One `vllm serve` per GPU; replace the adapter paths with yours.")
        page.table(["GPU", "command"], [[str(i), c] for i, c in enumerate(commands)], collapsed="Show the commands")
    return page.write(out_dir)
