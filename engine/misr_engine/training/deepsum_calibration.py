"""DeepSUM's uncertainty, calibrated on validation stacks (DeepSUM has no uncertainty head).

The network's log-scale is a linear map of per-pixel cues (``models.deepsum.uncertainty_features``:
the spread of its passes, the SR's local texture, the cloud cover); this fits that map so that
exp(log-scale) is the expected absolute error, by the Laplace likelihood of the errors of the
cPSNR-aligned, bias-corrected SR on every validation stack (``fit_calibration``), and writes
the weights with it (and where it came from) in their metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..datasets.samples import load_samples
from ..evaluation.metrics import best_alignment
from ..models.deepsum import DeepSUM, fit_calibration
from ..models.weights import carried_metadata, load_model, read_metadata, save_weights
from .trainer import _hr_mask, _phases

BORDER = 3  # HR pixels of the cPSNR border
CUES = ["1", "log spread of the passes", "log local texture", "cloudy fraction"]


@torch.no_grad()  # not inference_mode: the fit takes gradients through the cues
def calibration_samples(model: DeepSUM, data: dict[str, np.ndarray],
                        frames: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel cues (P, 4) and normalised |error| (P,) of the aligned, bias-corrected SR of
    every stack in `data` (its first `frames` frames)."""
    model.eval()
    cues, errors = [], []
    for index in range(len(data["frames"])):
        f, m = data["frames"][index, :frames], data["masks"][index, :frames]
        centre, spread = (float(v) for v in data["norm"][index])
        inputs = (np.where(m, (f - centre) / spread, 0.0), m, _phases(data)[index, :frames])
        mean, features = model.mean_and_features(*(torch.from_numpy(a.astype(np.float32))[None] for a in inputs))
        sr = mean[0, 0].double().numpy() * spread + centre
        best = best_alignment(sr, data["hr"][index].astype(np.float64), _hr_mask(data)[index], BORDER)
        cues.append(features[0, :, BORDER:-BORDER, BORDER:-BORDER].numpy()[:, best.mask].T)
        errors.append(np.abs(best.error[best.mask]) / spread)
    return torch.from_numpy(np.concatenate(cues)), torch.from_numpy(np.concatenate(errors))


def calibrate_deepsum(weights: str | Path, val_data: str | Path, output: str | Path) -> dict:
    """Fit the uncertainty calibration of DeepSUM `weights` on the stacks of `val_data` and write
    the weights with it to `output`. Returns what was fitted (also in the file's metadata)."""
    model = load_model("deepsum", weights, "cpu").model
    cues, errors = calibration_samples(model, load_samples(val_data))
    coefficients = fit_calibration(cues, errors)
    model.calibration.copy_(coefficients)
    fitted = {"data": str(val_data), "pixels": len(errors), "coefficients": [round(c, 5) for c in coefficients.tolist()],
              "cues": CUES}
    metadata = carried_metadata(read_metadata(Path(weights)))
    metadata["calibration"] = json.dumps(fitted)
    save_weights(model, output, metadata)
    return fitted
