"""Pictures for people (not for the model): a step's overlay with its click marked, a contact
sheet of all steps, and the IoU-versus-clicks plot of an evaluation.

The model's own observation has no markers (see `ibisagent.imaging.overlay`); these pictures add
a contour and the clicks so a person can follow what happened. The plots are written atomically
(`ibisagent.safe_io`); the step pictures are PIL images the caller writes where its outputs go.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from . import safe_io
from .clicks import Click
from .imaging import overlay

POSITIVE_COLOUR = (40, 220, 60)
NEGATIVE_COLOUR = (235, 50, 50)
CONTOUR_COLOUR = (255, 230, 0)
#: Pictures are enlarged (nearest neighbour) until their short side reaches this many pixels.
MIN_SIDE = 320


def step_picture(
    image_rgb: np.ndarray,
    mask: np.ndarray,
    clicks: Sequence[Click] = (),
    earlier_clicks: Sequence[Click] = (),
    title: str = "",
) -> Image.Image:
    """The mask blended in green with a yellow contour; this step's clicks as large rings and
    earlier clicks as small dots (green positive, red negative); an optional title bar."""
    picture = overlay(image_rgb, mask)
    edge = mask & ~ndimage.binary_erosion(mask)
    picture[edge] = CONTOUR_COLOUR
    scale = max(1, int(np.ceil(MIN_SIDE / min(mask.shape))))
    canvas = Image.fromarray(picture).resize((mask.shape[1] * scale, mask.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for click in earlier_clicks:
        _dot(draw, click, scale, radius=scale + 2, ring=False)
    for click in clicks:
        _dot(draw, click, scale, radius=3 * scale + 4, ring=True)
    if title:
        canvas = _with_title(canvas, title)
    return canvas


def _dot(draw: ImageDraw.ImageDraw, click: Click, scale: int, radius: int, ring: bool) -> None:
    colour = POSITIVE_COLOUR if click.positive else NEGATIVE_COLOUR
    cx, cy = (click.x + 0.5) * scale, (click.y + 0.5) * scale
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if ring:
        draw.ellipse(box, outline=(255, 255, 255), width=5)
        draw.ellipse(box, outline=colour, width=3)
        sign = "+" if click.positive else "-"
        draw.text((cx + radius + 2, cy - radius - 2), sign, fill=colour)
    else:
        draw.ellipse(box, fill=colour, outline=(0, 0, 0))


def _with_title(picture: Image.Image, title: str) -> Image.Image:
    bar = 18
    out = Image.new("RGB", (picture.width, picture.height + bar), (0, 0, 0))
    out.paste(picture, (0, bar))
    ImageDraw.Draw(out).text((4, 3), title, fill=(255, 255, 255))
    return out


def contact_sheet(pictures: List[Image.Image], columns: int = 5) -> Image.Image:
    """Tile pictures left to right, top to bottom (all are scaled to the first one's size)."""
    if not pictures:
        raise ValueError("No pictures to tile.")
    width, height = pictures[0].size
    rows = (len(pictures) + columns - 1) // columns
    columns = min(columns, len(pictures))
    sheet = Image.new("RGB", (columns * width, rows * height), (20, 20, 20))
    for number, picture in enumerate(pictures):
        if picture.size != (width, height):
            picture = picture.resize((width, height))
        sheet.paste(picture, ((number % columns) * width, (number // columns) * height))
    return sheet


def iou_curve_plot(path: str, curves: dict, title: str = "Mean IoU versus clicks", baseline: Optional[float] = None) -> None:
    """Save a PNG with one mean-IoU-per-click line per entry of ``curves`` (name -> values)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4), dpi=120)
    for name, values in curves.items():
        axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    if baseline is not None:
        axes.axhline(baseline, color="grey", linestyle=":", label="starting mask")
    for level in (0.85, 0.9):
        axes.axhline(level, color="lightgrey", linewidth=0.8)
    axes.set_xlabel("clicks")
    axes.set_ylabel("mean IoU")
    axes.set_ylim(0.0, 1.0)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    _save(figure, path)
    pyplot.close(figure)


def dice_vs_clicks_plot(path: str, cases: List[tuple], title: str = "") -> None:
    """Save a PNG of each case's 3D Dice against its clicks (``cases``: (name, clicks, dice)),
    with the mean as a cross."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4), dpi=120)
    for name, clicks, value in cases:
        axes.scatter([clicks], [value], s=24)
        axes.annotate(name, (clicks, value), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if cases:
        axes.scatter([sum(c[1] for c in cases) / len(cases)], [sum(c[2] for c in cases) / len(cases)],
                     marker="x", s=80, color="black", label="mean")
        axes.legend(loc="lower right")
    axes.set_xlabel("clicks per volume")
    axes.set_ylabel("3D Dice")
    axes.set_ylim(0.0, 1.0)
    axes.set_title(("3D Dice versus clicks" + (f" ({title})" if title else "")))
    axes.grid(alpha=0.3)
    figure.tight_layout()
    _save(figure, path)
    pyplot.close(figure)


def _save(figure, path: str) -> None:
    """A matplotlib figure as a PNG at ``path``, replaced at once (`safe_io.atomic_path`)."""
    with safe_io.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
