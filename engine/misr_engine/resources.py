"""Files shipped inside the engine package (weights, model cards, the sample scene), found with
``importlib.resources`` so that an installed engine finds them as well as a checkout does."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(*parts: str) -> Path:
    """A path under the package's ``data/`` folder."""
    return Path(str(resources.files(__package__).joinpath("data", *parts)))


def weights_dir() -> Path:
    """Where the shipped weights and their model cards are."""
    return data_path("weights")


def sample_dir() -> Path:
    """The embedded sample scene: a 9-frame Sentinel-2 NIR time series with masks."""
    return data_path("sample")


def sample_paths() -> tuple[list[str], list[str]]:
    """The sample's frames and masks, in date order."""
    folder = sample_dir()
    return (sorted(str(p) for p in folder.glob("frame_*.tif")),
            sorted(str(p) for p in folder.glob("mask_*.tif")))


def checkout_root() -> Path | None:
    """The repository root when the engine runs from a source checkout (editable install), else None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "engine" / "misr_engine").is_dir() else None
