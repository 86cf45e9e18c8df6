"""Fit DeepSUM's uncertainty calibration on validation stacks and write the calibrated weights.

    python scripts/calibrate_deepsum.py WEIGHTS VAL_DATA OUTPUT

(``misr_engine.training.deepsum_calibration``: exp(log-scale) becomes the expected absolute error.)
"""

from __future__ import annotations

import json
import sys

import torch

from misr_engine.training.deepsum_calibration import calibrate_deepsum

if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    print(json.dumps(calibrate_deepsum(*sys.argv[1:])))
