"""Pack what a GPU run needs into device/ (git-ignored), small enough to travel with the working tree
to a lent GPU machine (64 MiB in all): the training stacks (a random subset, float16, compressed),
the validation stacks and the embedded sample scene as arrays (the device image has no GDAL).
float16 keeps 11 bits: below the simulated sensor noise at every level. It says how much travels
with `device` carried (the working tree's tracked and not-ignored files too) and stops with an
error when that is over the limit. 600 training samples (32.5 MiB; 36 MiB with the rest) leave
room: the tracked tree was 20.5 MiB on 2026-12-06, and 700 samples came to 62.2 MiB in all.

Run here, on the CPU, after `make dataset`:  .venv/bin/python scripts/pack_for_device.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from misr_engine.datasets.samples import load_samples
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.stack import read_stack
from misr_engine.resources import sample_dir, sample_paths

ROOT = Path(__file__).resolve().parents[1]
TRAVEL_LIMIT = 64 * 2 ** 20
"""Bytes one call to the GPU machine carries: the working tree and the carried paths."""


def compact(samples: dict[str, np.ndarray], keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The samples `keep` (all by default), float arrays as float16."""
    out = {}
    for key, value in samples.items():
        if keep is not None and value.ndim and len(value) == len(samples["frames"]):
            value = value[keep]
        out[key] = value.astype(np.float16) if value.dtype == np.float32 and key not in ("norm", "shifts") else value
    return out


def working_tree_bytes(root: Path) -> int:
    """Bytes of the files that travel with the working tree: tracked, and untracked but not ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.decode()
    return sum((root / name).stat().st_size for name in set(listed.split("\0")) if name and (root / name).is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="data/s2_train.npz")
    parser.add_argument("--val", default="data/s2_val.npz")
    parser.add_argument("--count", type=int, default=600, help="training samples kept (default: 600)")
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
    packed = 0
    for path in sorted(out.glob("*.npz")):
        packed += path.stat().st_size
        print(f"{args.output}/{path.name}: {path.stat().st_size / 2 ** 20:.1f} MiB")
    tree = working_tree_bytes(ROOT)
    print(f"travels with {args.output}/ carried: {(tree + packed) / 2 ** 20:.1f} MiB (working tree "
          f"{tree / 2 ** 20:.1f} MiB) of {TRAVEL_LIMIT / 2 ** 20:.0f} MiB")
    if tree + packed > TRAVEL_LIMIT:
        sys.exit(f"pack_for_device: {args.output}/ and the working tree come to more than one call carries: "
                 f"lower --count")


if __name__ == "__main__":
    main()
