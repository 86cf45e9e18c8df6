"""Pack what a GPU run needs into device/ (git-ignored), small enough to travel with the working
tree to a lent GPU machine (64 MiB in all): the training stacks (a random subset, float16,
compressed), the validation stacks and the embedded sample scene as arrays (the device image
has no GDAL). float16 keeps 11 bits: below the simulated sensor noise at every level.

Run here, on the CPU, after `make dataset`:  .venv/bin/python scripts/pack_for_device.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from misr_engine.datasets.samples import load_samples
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.stack import read_stack
from misr_engine.resources import sample_dir, sample_paths

ROOT = Path(__file__).resolve().parents[1]


def compact(samples: dict[str, np.ndarray], keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The samples `keep` (all by default), float arrays as float16."""
    out = {}
    for key, value in samples.items():
        if keep is not None and value.ndim and len(value) == len(samples["frames"]):
            value = value[keep]
        out[key] = value.astype(np.float16) if value.dtype == np.float32 and key not in ("norm", "shifts") else value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="data/s2_train.npz")
    parser.add_argument("--val", default="data/s2_val.npz")
    parser.add_argument("--count", type=int, default=700, help="training samples kept (default: 700)")
    parser.add_argument("--output", default="device", help="folder to write (default: device)")
    args = parser.parse_args()
    out = ROOT / args.output
    out.mkdir(exist_ok=True)
    train = load_samples(args.train)
    keep = np.sort(np.random.default_rng(0).permutation(len(train["frames"]))[:args.count])
    np.savez_compressed(out / "s2_train.npz", **compact(train, keep))
    np.savez_compressed(out / "s2_val.npz", **compact(load_samples(args.val)))
    stack = read_stack(*sample_paths())
    np.savez_compressed(out / "sample.npz", frames=stack.frames, masks=stack.masks,
                        reference=read_band(str(sample_dir() / "reference_hr.tif"))[0])
    for path in sorted(out.glob("*.npz")):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 2 ** 20:.1f} MiB")


if __name__ == "__main__":
    main()
