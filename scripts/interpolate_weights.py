"""Write weights part of the way from a start to a continued training of it (WiSE-FT; issue 14's
candidates between stage 5 and its continuation, chosen on validation scenes; `make train` writes
the shipped stage 6 this way, at --share 0.75):

    .venv/bin/python scripts/interpolate_weights.py runs/piunet_s2_cpu_constrained/best.safetensors \\
        runs/piunet_s2_cpu_contrast_context/best.safetensors --share 0.5 -o /tmp/piunet_half.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from misr_engine.errors import MisrError
from misr_engine.training.interpolation import interpolate_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("start", type=Path)
    parser.add_argument("tuned", type=Path)
    parser.add_argument("--share", type=float, required=True, help="share of the way to TUNED (0: START, 1: TUNED)")
    parser.add_argument("--model", default="piunet")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        interpolate_weights(args.model, args.start, args.tuned, args.share, args.out)
    except MisrError as error:
        sys.exit(f"error: {error}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
