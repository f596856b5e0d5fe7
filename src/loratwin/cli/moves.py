"""`loratwin place --from`: the re-placement of a running placement, and how its moves print."""

from pathlib import Path

from rich.console import Console

from loratwin.errors import InputError
from loratwin.grammar import plural

MAX_LISTED_MOVES = 40


def replace_from(path: Path, workload, profile, check, search_moves: int, gpus, algorithm: str, compare: bool):
    """The placement at `path` (as `place --out` writes it) adapted to `workload`."""
    for flag, given in (("--gpus", gpus is not None), (f"--algorithm {algorithm}", algorithm != "greedy"),
                        ("--compare", compare)):
        if given:
            raise InputError(f"--from {path}: {flag} does not apply to a re-placement (it keeps the GPUs of "
                             "--from and opens new ones only where needed); drop one of them")
    from loratwin.plan.placement.replace import replace
    from loratwin.plan.placement.running import read_running

    running = read_running(path)
    if not any(a.id in running.routing for a in workload.adapters):
        raise InputError(f"--from {path}: none of its {plural(len(running.routing), 'adapter')} is in the new "
                         "workload, so it is a placement of another workload; give the placement these adapters "
                         "run on, or place afresh without --from")
    return replace(running, workload, profile, check=check, search_moves=search_moves, source=f"--from {path}")


def print_moves(result, console: Console) -> None:
    """The moves, the loads they cost, and what a fresh placement would move."""
    moves = result.moves
    console.print(
        f"[bold]{plural(len(moves), 'adapter')} moved[/] (loads {result.moved_load_ms / 1000:.2f} s in all); a fresh "
        f"placement would move {result.fresh_moves} on {plural(result.fresh_gpus, 'GPU')}"
        + (f"; {plural(len(result.added), 'new adapter')} placed (loads {sum(m.load_ms for m in result.added) / 1000:.2f} s)"
           if result.added else "")
        + (f"; {plural(len(result.dropped), 'adapter')} gone" if result.dropped else ""),
        highlight=False,
    )
    lines = []
    if result.refused:
        lines.append("GPUs the rule refuses as they were under the new rates: " + _gpus(result.refused))
    if result.freed:
        lines.append("GPUs left without adapters (freed): " + _gpus(result.freed))
    lines.append("servers that restart (--max-loras or --max-lora-rank changed): "
                 + (_gpus(result.restarts) if result.restarts else "none")
                 + "; the others load and unload adapters at run time")
    lines += result.notes
    for m in moves[:MAX_LISTED_MOVES]:
        source = f"GPU {m.from_gpu}" if m.from_gpu is not None else "new"
        target = f"GPU {m.to_gpu}" if m.to_gpu is not None else "dropped"
        lines.append(f"  {m.adapter} (rank {m.rank}): {source} -> {target}, load {m.load_ms:.0f} ms")
    if len(moves) > MAX_LISTED_MOVES:
        lines.append(f"  ... {len(moves) - MAX_LISTED_MOVES} more (--json lists every move)")
    for line in lines:
        console.print(line, highlight=False, markup=False)


def _gpus(indices) -> str:
    """GPU indices in words ("GPU 0", "GPUs 0, 1"), never a bare index that reads as a count."""
    return ("GPU " if len(indices) == 1 else "GPUs ") + ", ".join(map(str, indices))
