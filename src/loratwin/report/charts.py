"""Matplotlib setup shared by every report: one look, PNG bytes out."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from loratwin.errors import LoratwinError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Colours: a calm blue for what was achieved, grey for what was asked, red for what went wrong.
BLUE = "#2563eb"
ORANGE = "#ea580c"
GREEN = "#16a34a"
GREY = "#6b7280"
LIGHT_GREY = "#d1d5db"
RED = "#dc2626"
PURPLE = "#7c3aed"
SERIES = (BLUE, ORANGE, GREEN, PURPLE, "#0891b2", "#be185d", "#65a30d", "#a16207", "#4f46e5", "#0f766e")

# 144 dpi renders crisply on high-density screens while the page shows the figure at half size.
DPI = 144
WIDTH_IN = 10.0

_STYLE = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9ca3af",
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "xtick.color": "#374151",
    "ytick.color": "#374151",
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a message saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise LoratwinError(
            "reports draw their charts with matplotlib, a dependency of loratwin that is missing here: "
            "pip install matplotlib (or reinstall loratwin)"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(rows: int = 1, cols: int = 1, *, height_in: float = 4.2, **kwargs) -> Iterator[tuple[Figure, object]]:
    """A styled figure with its axes; closed on exit so long reports do not pile up memory."""
    plt = pyplot()
    import matplotlib as mpl

    with mpl.rc_context(_STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, height_in), layout="constrained", **kwargs)
        try:
            yield fig, axes
        finally:
            plt.close(fig)


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def thousands(ax, axis: str = "y") -> None:
    """Tick labels with thousands separators (12,000 rather than 12000 or 1.2e4)."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _pos: f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.2g}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def percent(ax, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0))


def no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=GREY, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def compact(value: float) -> str:
    """1,500 -> 1.5k, 2,000,000 -> 2M: short tick labels for axes spanning decades."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def log_axis(ax, axis: str = "y") -> None:
    """A log axis labelled in plain numbers (20, 50, 100, 1k), denser when it spans few decades.
    Call after the data (or limits) are in place."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    decades = math.log10(max(hi, 1e-12) / max(lo, 1e-12))
    subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
    target.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: compact(v)))
    target.set_minor_formatter(NullFormatter())
