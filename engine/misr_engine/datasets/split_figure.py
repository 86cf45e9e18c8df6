"""The figure of the Sentinel-2 splits: a 10 m band with the train / validation / test windows,
the gaps between them, and the area of the 20 m unseen bands (dataset card)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .sentinel2 import NATIVE_PIXEL_M, SPLITS, TEST_WINDOW, UNSEEN_BANDS, Window, scaled_window, sentinel2_band_paths

SPLIT_COLOURS = {"train": "tab:blue", "validation": "tab:orange", "test": "tab:green"}
SPLIT_USES = {"train": "training", "validation": "every choice", "test": "reporting only"}
UNSEEN_PIXEL_M = 20.0
"""Pixel size of the unseen bands."""
DISPLAY_STEP = 3
"""Every third 10 m pixel is drawn (the figure need not be full resolution)."""


def _bounds(window: Window, height: int, width: int) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of a window, open ends closed at the raster's size."""
    (r0, r1), (c0, c1) = window
    return r0, height if r1 is None else r1, c0, width if c1 is None else c1


def plot_splits(path: str | Path, band: str = "B04") -> None:
    """Draw `band` (10 m) with every split window, the gaps and the unseen-band area into `path` (PNG)."""
    from ..rasters.bands import open_band, read_band  # GDAL only where the figure is drawn

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    image = read_band(sentinel2_band_paths((band,))[0])[0]
    height, width = image.shape
    shown = image[::DISPLAY_STEP, ::DISPLAY_STEP]
    low, high = np.percentile(shown, [1, 99])
    figure, axis = plt.subplots(figsize=(6.4, 6.6))
    axis.imshow(shown, cmap="gray", vmin=low, vmax=high, extent=(0, width, height, 0))
    bounds = {name: _bounds(window, height, width) for name, window in SPLITS.items()}
    for name, (r0, r1, c0, c1) in bounds.items():
        axis.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, facecolor=SPLIT_COLOURS[name], alpha=0.22,
                                 edgecolor=SPLIT_COLOURS[name], linewidth=2))
        axis.text(c0 + 15, r0 + 60, f"{name}: {SPLIT_USES[name]}", color="white", fontsize=9, weight="bold",
                  bbox={"facecolor": SPLIT_COLOURS[name], "alpha": 0.8, "pad": 2})
    ordered = sorted(bounds.values())
    for (_, above_end, _, _), (below_start, _, _, _) in zip(ordered, ordered[1:]):
        axis.add_patch(Rectangle((0, above_end), width, below_start - above_end, facecolor="none",
                                 edgecolor="red", hatch="////", linewidth=0))
    unseen = open_band(sentinel2_band_paths(UNSEEN_BANDS[:1])[0], None).grid
    factor = UNSEEN_PIXEL_M / NATIVE_PIXEL_M
    r0, r1, c0, c1 = (v * factor for v in _bounds(scaled_window(TEST_WINDOW, UNSEEN_PIXEL_M), unseen.height,
                                                  unseen.width))
    axis.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, facecolor="none", edgecolor="magenta", linestyle="--",
                             linewidth=2))
    legend = [Patch(facecolor=SPLIT_COLOURS[n], alpha=0.5, label=f"{n} window ({SPLIT_USES[n]})") for n in SPLITS]
    legend += [Patch(facecolor="none", edgecolor="red", hatch="////", label="gaps (never used)"),
               Patch(facecolor="none", edgecolor="magenta", linestyle="--",
                     label=f"20 m unseen bands ({' '.join(UNSEEN_BANDS)}): test area only")]
    axis.legend(handles=legend, loc="lower right", fontsize=7, framealpha=0.9)
    axis.set_title(f"Sentinel-2 {band} (10 m, {width} x {height} px): the splits", fontsize=10)
    axis.set_xlabel("column (10 m px)")
    axis.set_ylabel("row (10 m px)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
