"""Weight-space interpolation between a network's starting weights and a continued training of
them (WiSE-FT: Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): every
parameter at (1 - share) of the start plus `share` of the continuation. It keeps most of what
the continuation gained while moving the network's behaviour less from its start's, which is
how issue 14 chooses between shipped and continued weights on validation scenes."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import MisrError
from ..models.weights import carried_metadata, file_sha256, load_model, save_weights
from ..rasters.outputs import atomic_outputs


def interpolated_state(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                       share: float) -> dict[str, torch.Tensor]:
    """(1 - share) * start + share * tuned for every floating-point tensor (BatchNorm's running
    statistics too, as WiSE-FT does); other tensors are counters (BatchNorm's batches seen), which
    inference does not read: the continuation's."""
    if start.keys() != tuned.keys():
        raise ValueError(f"the two states hold different tensors: {sorted(start.keys() ^ tuned.keys())[:3]}")
    blended = {}
    for name, first in start.items():
        second = tuned[name]
        if first.shape != second.shape:
            raise ValueError(f"tensor {name!r}: shapes {tuple(first.shape)} and {tuple(second.shape)}")
        if first.is_floating_point():
            blended[name] = torch.lerp(first, second.to(first.dtype), share)
        else:
            blended[name] = second.clone()
    return blended


def interpolate_weights(model_name: str, start: Path, tuned: Path, share: float, out: Path) -> None:
    """Write to `out` the weights `share` of the way from `start` to `tuned` (two weight files of
    `model_name` with the same configuration), with `tuned`'s metadata and where they came from;
    written to a temporary file beside it and moved into place only once complete."""
    if not 0.0 <= share <= 1.0:
        raise MisrError(f"interpolation share {share} is outside [0, 1]")
    first, second = load_model(model_name, start), load_model(model_name, tuned)
    if first.model.config.to_dict() != second.model.config.to_dict():
        raise MisrError(f"{tuned}: its network configuration differs from {start}'s; they cannot be interpolated")
    try:
        state = interpolated_state(first.model.state_dict(), second.model.state_dict(), share)
    except ValueError as exc:
        raise MisrError(f"{start} and {tuned}: {exc}") from None
    second.model.load_state_dict(state)
    metadata = carried_metadata(second.metadata)
    metadata["interpolation"] = json.dumps({"start": {"file": start.name, "sha256": file_sha256(start)},
                                            "tuned": {"file": tuned.name, "sha256": file_sha256(tuned)},
                                            "share_of_tuned": share})
    with atomic_outputs([str(out)], overwrite=True) as (temporary,):
        save_weights(second.model, temporary, metadata)
