"""The report's pictures: matplotlib figures rendered to PNG bytes of a known pixel size, and the kinds of
chart several sections draw (grouped bars, a confusion heat map).

Figures are built with :class:`matplotlib.figure.Figure`, never through ``pyplot``: no global state, no
backend switch, nothing shown. A figure of ``figsize`` inches saved at :data:`DPI` without a tight bounding
box is exactly ``figsize * DPI`` pixels, which the page states in each ``<img>``.
"""
import io
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

DPI = 100
#: Colours of successive runs / series (matplotlib's default cycle, spelled out so every chart agrees).
COLOURS = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22',
           '#17becf')


@dataclass(frozen=True)
class Picture:
    """One picture of the page.

    Attributes:
        name: File name under the report's ``figures/`` folder (``.png``).
        data: The PNG bytes.
        width: Width in pixels.
        height: Height in pixels.
        caption: What it shows, one sentence (also the ``alt`` text).
    """
    name: str
    data: bytes
    width: int
    height: int
    caption: str


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure whose PNG is ``width_in * DPI`` x ``height_in * DPI`` pixels (whole pixels)."""
    return Figure(figsize=(round(width_in * DPI) / DPI, round(height_in * DPI) / DPI), dpi=DPI)


def grid_margins(fig: Figure, left: float = 0.65, right: float = 0.2, bottom: float = 0.5, top: float = 0.35,
                 wspace: float = 0.6, hspace: float = 0.75) -> None:
    """Places a grid of subplots with margins and gaps in inches: half the cost of ``tight_layout``, which
    measures every label, for grids of small plots whose labels are alike."""
    width, height = fig.get_size_inches()
    rows, cols = fig.axes[0].get_subplotspec().get_gridspec().get_geometry() if fig.axes else (1, 1)
    axes_width = (width - left - right - wspace * (cols - 1)) / cols
    axes_height = (height - bottom - top - hspace * (rows - 1)) / rows
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace / axes_width, hspace=hspace / axes_height)


def render(fig: Figure, name: str, caption: str, tight: bool = True) -> Picture:
    """Renders ``fig`` to PNG bytes; ``tight``: its layout tightened inside its fixed size first (else the
    caller placed the axes, e.g. with :func:`grid_margins`)."""
    width, height = (int(round(v)) for v in fig.get_size_inches() * DPI)
    if tight:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=DPI)
    return Picture(name, buffer.getvalue(), width, height, caption)


def picture_from_array(image: np.ndarray, name: str, caption: str, max_width: int = 0,
                       min_height: int = 0) -> Picture:
    """A PNG picture of an RGB uint8 array (H, W, 3), scaled down to ``max_width`` pixels when wider, or
    enlarged by a whole factor (pixels repeated) to at least ``min_height`` when that keeps it narrower."""
    picture = Image.fromarray(np.ascontiguousarray(image.astype(np.uint8)))
    if max_width and picture.width > max_width:
        picture = picture.resize((max_width, max(1, round(picture.height * max_width / picture.width))),
                                 Image.BILINEAR)
    factor = -(-min_height // picture.height) if min_height and picture.height < min_height else 1
    if factor > 1 and (not max_width or picture.width * factor <= max_width):
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format='PNG', optimize=True)
    return Picture(name, buffer.getvalue(), picture.width, picture.height, caption)


def grouped_bars(name: str, caption: str, title: str, categories: Sequence[str],
                 series: Dict[str, Sequence[float]], ylabel: str, ylim: Tuple[float, float] = (0.0, 1.0)
                 ) -> Picture:
    """Bars per category, one colour per series (NaN draws no bar), values printed above the bars."""
    width_in = min(16.0, max(6.0, 0.5 * len(categories) * max(1, len(series)) + 2.0))
    fig = new_figure(width_in, 3.6)
    ax = fig.subplots()
    positions = np.arange(len(categories))
    bar_width = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=float)
        offsets = positions - 0.4 + bar_width * (index + 0.5)
        bars = ax.bar(offsets, np.nan_to_num(values), bar_width, label=label, color=COLOURS[index % len(COLOURS)])
        if len(categories) <= 30:
            for bar, value in zip(bars, values):
                if np.isfinite(value):
                    ax.annotate(f'{value:.2f}', (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha='center', va='bottom', fontsize=7)
    ax.set_xticks(positions)
    ax.set_xticklabels(categories, rotation=45 if len(categories) > 8 else 0, ha='right' if len(categories) > 8
                       else 'center', fontsize=8)
    ax.set(ylabel=ylabel, ylim=(ylim[0], ylim[1] * 1.08), title=title)
    ax.grid(axis='y', alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return render(fig, name, caption)


def confusion_heatmap(name: str, caption: str, title: str, fractions: np.ndarray,
                      counts: Optional[np.ndarray], row_labels: Sequence[str], col_labels: Sequence[str],
                      xlabel: str, ylabel: str) -> Picture:
    """A heat map of ``fractions`` (rows sum to 1 where they hold anything), cells annotated with the
    percentage and, when given, the count."""
    size = max(4.5, min(14.0, 0.45 * max(len(row_labels), len(col_labels)) + 2.5))
    fig = new_figure(size + 1.0, size)
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap='Blues', vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='fraction of the row')
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, rotation=45, ha='right', fontsize=8)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if len(row_labels) * len(col_labels) <= 400:
        for row in range(fractions.shape[0]):
            for col in range(fractions.shape[1]):
                if (counts[row, col] if counts is not None else fractions[row, col]) == 0:
                    continue
                text = f'{100 * fractions[row, col]:.0f}%'
                if counts is not None:
                    text += f'\n{int(counts[row, col])}'
                ax.text(col, row, text, ha='center', va='center', fontsize=6,
                        color='white' if fractions[row, col] > 0.6 else 'black')
    return render(fig, name, caption)


def row_fractions(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows without anything stay zero)."""
    sums = matrix.sum(axis=1, keepdims=True).astype(float)
    return np.divide(matrix, sums, out=np.zeros(matrix.shape, dtype=float), where=sums > 0)
