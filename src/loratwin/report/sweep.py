"""The report of a sweep: throughput over (max_loras, adapters served), for each workload.

Input: a table with columns workload_key, max_loras, served, total_tok_s, starved (one row per
simulated point; repeated points, e.g. seeds, are averaged and count as starved when most repeats
starve): a sweep's results folder (`loratwin sweep --out`), a Parquet file, or a folder of them (its
`parts/`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loratwin.errors import InputError
from loratwin.report import charts
from loratwin.report.html import Cell, Page, integer, num

KIND = "sweep"
COLUMNS = ("workload_key", "max_loras", "served", "total_tok_s", "starved")
PREFERRED_FILE = "sweep.parquet"
# Cells get their value written in when the heatmap is at most this many columns wide.
ANNOTATE_COLUMNS = 14


@dataclass
class Grid:
    """One workload's sweep on a (max_loras x served) grid; NaN where a point was not run."""

    workload_key: str
    max_loras: np.ndarray  # sorted ascending, shape (m,)
    served: np.ndarray  # sorted ascending, shape (n,)
    tok_s: np.ndarray  # (m, n)
    starved: np.ndarray  # (m, n) bool; False where not run

    def frontier(self) -> dict[int, int | None]:
        """For each max_loras, the most adapters served without starving (None: it always starves)."""
        out: dict[int, int | None] = {}
        for i, m in enumerate(self.max_loras):
            ok = np.isfinite(self.tok_s[i]) & ~self.starved[i]
            out[int(m)] = int(self.served[ok].max()) if ok.any() else None
        return out

    def optimum(self) -> tuple[int, int] | None:
        """(max_loras, served): the most adapters served without starving, then the highest throughput."""
        ok = np.isfinite(self.tok_s) & ~self.starved
        if not ok.any():
            return None
        rows, cols = np.nonzero(ok)
        best = max(zip(rows, cols, strict=True), key=lambda rc: (self.served[rc[1]], self.tok_s[rc]))
        return int(self.max_loras[best[0]]), int(self.served[best[1]])


def _parquet_in(path: Path) -> Path | None:
    """The sweep table at `path`: the file itself, or sweep.parquet / the one matching Parquet file in it."""
    import pyarrow.parquet as pq

    if path.is_file():
        candidates = [path] if path.suffix == ".parquet" else []
    elif (path / PREFERRED_FILE).is_file():
        candidates = [path / PREFERRED_FILE]
    else:
        candidates = sorted(path.glob("*.parquet")) if path.is_dir() else []
    for file in candidates:
        try:
            names = set(pq.read_schema(file).names)
        except (OSError, ValueError):  # pyarrow's errors for a file that is not Parquet
            continue
        if set(COLUMNS) <= names:
            return file
    return None


def _is_store(path: Path) -> bool:
    """A sweep's results folder (`sweep --out`): a manifest listing its part files."""
    from loratwin.sweep.store import MANIFEST

    return path.is_dir() and (path / MANIFEST).is_file()


def matches(path: Path) -> bool:
    return _is_store(path) or _parquet_in(path) is not None


def write_from_path(path: Path, out_dir: Path) -> Path:
    if _is_store(path):
        from loratwin.sweep.store import read_results

        return write_sweep_report(read_results(path), out_dir)
    file = _parquet_in(path)
    if file is None:
        raise InputError(f"{path}: no Parquet table with columns {', '.join(COLUMNS)}")
    return write_sweep_report(file, out_dir)


def _columns(table) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(table, (str, Path)):
        table = pq.read_table(table, columns=list(COLUMNS))
    if isinstance(table, pa.Table):
        table = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    if not isinstance(table, Mapping):
        raise TypeError("a sweep table is a pyarrow Table, a mapping of columns or a Parquet path")
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise InputError(f"sweep table lacks columns {', '.join(missing)}")
    return {c: np.asarray(table[c]) for c in COLUMNS}


def grids(table) -> list[Grid]:
    cols = _columns(table)
    keys = cols["workload_key"].astype(str)
    out = []
    for key in sorted(set(keys.tolist())):
        sel = keys == key
        m_vals, s_vals = cols["max_loras"][sel].astype(np.int64), cols["served"][sel].astype(np.int64)
        tok, starved = cols["total_tok_s"][sel].astype(np.float64), cols["starved"][sel].astype(bool)
        ms, ss = np.unique(m_vals), np.unique(s_vals)
        mi, si = np.searchsorted(ms, m_vals), np.searchsorted(ss, s_vals)
        count = np.zeros((ms.size, ss.size))
        total = np.zeros_like(count)
        starved_n = np.zeros_like(count)
        np.add.at(count, (mi, si), 1)
        np.add.at(total, (mi, si), tok)
        np.add.at(starved_n, (mi, si), starved)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / count, np.nan)
        out.append(Grid(key, ms, ss, mean, (count > 0) & (starved_n > count / 2)))
    return out


def write_sweep_report(table, out_dir: str | Path) -> Path:
    """index.html (self-contained) and PNGs in out_dir; `table` as in `grids`."""
    all_grids = grids(table)
    n_points = sum(int(np.isfinite(g.tok_s).sum()) for g in all_grids)
    page = Page(
        title=f"Sweep over {len(all_grids)} workload{'s' if len(all_grids) != 1 else ''}",
        kind=KIND,
        subtitle=(f"{n_points:,} configurations of --max-loras and adapters served",),
    )
    page.text("For each workload: throughput against the number of adapters served, one line per "
              "--max-loras. The starvation frontier joins, for each --max-loras, the most adapters served "
              "without starving; the optimum (★) serves the most adapters without starving, and among "
              "those configurations has the highest throughput.")
    page.table(["workload", "optimum --max-loras", "adapters served", "throughput (tok/s)", "points"],
               [_optimum_row(g) for g in all_grids],
               row_tones=[None if g.optimum() else "bad" for g in all_grids], compact=True)
    for index, grid in enumerate(all_grids):
        page.section(f"Workload {grid.workload_key}")
        opt = grid.optimum()
        if opt is None:
            page.verdict("Every configuration starves.", "bad")
        else:
            page.verdict(f"Optimum: --max-loras {opt[0]} serves {opt[1]:,} adapters at "
                         f"{_tok_at(grid, *opt):,.0f} tok/s without starving.", "good")
        page.chart(f"throughput-{index + 1}", _lines_chart(grid),
                   alt=f"Throughput against adapters served for workload {grid.workload_key}")
        page.chart(f"heatmap-{index + 1}", _heatmap_chart(grid),
                   alt=f"Throughput heatmap over max_loras and adapters served for workload {grid.workload_key}",
                   caption="Hatched cells starve; the black line is the starvation frontier; blank cells "
                           "were not simulated.")
        _frontier_table(page, grid)
    return page.write(out_dir)


def _tok_at(grid: Grid, max_loras: int, served: int) -> float:
    i = int(np.searchsorted(grid.max_loras, max_loras))
    j = int(np.searchsorted(grid.served, served))
    return float(grid.tok_s[i, j])


def _optimum_row(grid: Grid) -> list:
    opt = grid.optimum()
    points = integer(int(np.isfinite(grid.tok_s).sum()))
    if opt is None:
        return [grid.workload_key, Cell("-", True), Cell("every point starves"), Cell("-", True), points]
    return [grid.workload_key, integer(opt[0]), integer(opt[1]), num(_tok_at(grid, *opt), 0), points]


def _frontier_table(page: Page, grid: Grid) -> None:
    rows, tones = [], []
    opt = grid.optimum()
    for m, served in grid.frontier().items():
        if served is None:
            rows.append([integer(m), Cell("starves at every point"), Cell("-", True)])
            tones.append("bad")
        else:
            rows.append([integer(m), integer(served), num(_tok_at(grid, m, served), 0)])
            tones.append("good" if opt == (m, served) else None)
    page.table(["--max-loras", "most adapters served without starving", "throughput there (tok/s)"], rows,
               row_tones=tones, collapsed="Starvation frontier" if len(rows) > 12 else None, compact=True)


def _colours(n: int) -> list:
    plt = charts.pyplot()
    cmap = plt.get_cmap("viridis")
    return [cmap(x) for x in (np.linspace(0.05, 0.85, n) if n > 1 else [0.35])]


def _lines_chart(grid: Grid) -> bytes:
    from matplotlib.lines import Line2D

    with charts.figure(height_in=4.6) as (fig, ax):
        colours = _colours(grid.max_loras.size)
        for i, m in enumerate(grid.max_loras):
            run = np.isfinite(grid.tok_s[i])
            x, y, s = grid.served[run], grid.tok_s[i][run], grid.starved[i][run]
            ax.plot(x, y, color=colours[i], linewidth=1.8, label=f"--max-loras {m}", zorder=2)
            ax.scatter(x[~s], y[~s], color=colours[i], s=26, zorder=3)
            ax.scatter(x[s], y[s], facecolors="white", edgecolors=colours[i], s=26, linewidths=1.4, zorder=3)
        front = [(served, _tok_at(grid, m, served)) for m, served in grid.frontier().items() if served is not None]
        if front:
            fx, fy = zip(*front)
            ax.plot(fx, fy, color="#111827", linestyle="--", linewidth=1.2, marker="D", markersize=5, zorder=4,
                    label="starvation frontier")
        opt = grid.optimum()
        if opt is not None:
            ty = _tok_at(grid, *opt)
            ax.scatter([opt[1]], [ty], marker="*", s=320, color="#f59e0b", edgecolors="#111827",
                       linewidths=0.8, zorder=5, label=f"optimum (--max-loras {opt[0]}, {opt[1]:,} served)")
        if grid.served.size and grid.served.max() / max(grid.served.min(), 1) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(grid.served, [f"{v:,}" for v in grid.served])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        charts.thousands(ax)
        ax.set_xlabel("adapters served")
        ax.set_ylabel("total throughput (tok/s)")
        ax.set_title(f"Throughput against adapters served — {grid.workload_key}")
        handles, _labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="white",
                              markeredgecolor=charts.GREY, label="starved point"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5)
        return charts.png_bytes(fig)


def _heatmap_chart(grid: Grid) -> bytes:
    from matplotlib.patches import Rectangle

    m, n = grid.tok_s.shape
    with charts.figure(height_in=max(3.2, 1.0 + 0.42 * m)) as (fig, ax):
        data = np.ma.masked_invalid(grid.tok_s)
        image = ax.imshow(data, origin="lower", aspect="auto", cmap="Blues", interpolation="nearest")
        bar = fig.colorbar(image, ax=ax, pad=0.01)
        bar.set_label("total throughput (tok/s)")
        charts.thousands(bar.ax)
        ax.grid(False)
        ax.set_xticks(range(n), [f"{v:,}" for v in grid.served], rotation=0 if n <= 16 else 60)
        ax.set_yticks(range(m), [str(v) for v in grid.max_loras])
        ax.set_xlabel("adapters served")
        ax.set_ylabel("--max-loras")
        ax.set_title(f"Throughput by configuration — {grid.workload_key}")
        finite = grid.tok_s[np.isfinite(grid.tok_s)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        for i in range(m):
            for j in range(n):
                if not np.isfinite(grid.tok_s[i, j]):
                    continue
                if grid.starved[i, j]:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                           edgecolor=charts.RED, linewidth=0, alpha=0.55))
                if n <= ANNOTATE_COLUMNS:
                    value = grid.tok_s[i, j]
                    ax.text(j, i, f"{value:,.0f}",
                            ha="center", va="center", fontsize=9,
                            color="white" if value > mid else "#111827")
        # frontier: the right edge of the last non-starved cell in each row
        served_index = {int(v): j for j, v in enumerate(grid.served)}
        xs, ys = [], []
        for i, (_m, served) in enumerate(grid.frontier().items()):
            edge = served_index[served] + 0.5 if served is not None else -0.5
            xs += [edge, edge]
            ys += [i - 0.5, i + 0.5]
        ax.plot(xs, ys, color="#111827", linewidth=2.2)
        opt = grid.optimum()
        if opt is not None:
            i, j = int(np.searchsorted(grid.max_loras, opt[0])), served_index[opt[1]]
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#f59e0b", linewidth=3))
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(-0.5, m - 0.5)
        return charts.png_bytes(fig)
