"""One look for every servectl plot (`plan --plot`, `bench --plot`): matplotlib without a display, the
same fonts, colours and grid, text kept as text in SVG (so the figures in a picture can be searched and
read back), and the file written atomically in the format its extension names.

matplotlib is the optional `plot` extra (`pip install 'servectl[plot]'`); it is imported only here, only
when a plot is asked for.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servectl.errors import UserError
from servectl.fsutil import write_atomic

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

FORMATS = {".png": "png", ".svg": "svg"}
# Memory terms, bottom to top of a bar; one colour each wherever they are drawn.
COLORS = {
    "context": "#9e9e9e",
    "weights": "#1f77b4",
    "activation_peak": "#ff7f0e",
    "non_torch": "#8c564b",
    "calibration": "#bcbd22",
    "cudagraphs": "#9467bd",
    "sampler_warmup": "#e377c2",
    "kv_cache": "#2ca02c",
    "kv_unused": "#98df8a",
    "headroom": "#f0f0f0",
    "over": "#d62728",
    "null_block": "#7f7f7f",
    "attention": "#17becf",
    "mamba": "#ff9896",
    "free": "#dfe9df",
}
LINE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays <text> in SVG: the figures are searchable and testable
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.grid": False,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def plot_format(path: Path) -> str:
    """png or svg from the file name; anything else is bad input."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"--plot {path}: the file name must end in .svg or .png", "e.g. --plot memory.svg")
    return fmt


def require_matplotlib() -> Any:
    """pyplot on the Agg backend (files only), with servectl's style; a UserError naming the extra when missing."""
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "--plot needs matplotlib, which is not installed",
            "pip install 'servectl[plot]' (or drop --plot: --json has every figure)",
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(RC)
    return plt


def save(fig: Any, path: Path, dpi: int = 110) -> None:
    """Write the figure in the format the extension names, atomically; close it."""
    import matplotlib.pyplot as plt

    buf = BytesIO()
    fig.savefig(
        buf,
        format=plot_format(path),
        dpi=dpi,
        bbox_inches="tight",
        metadata={"Date": None} if path.suffix.lower() == ".svg" else None,
    )
    plt.close(fig)
    write_atomic(path, buf.getvalue())
