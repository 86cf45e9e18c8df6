"""`backends.RefinedRunner`: the steps after the network rework the SR channel in turn, from the
tile's frames, masks and phases, and leave the predicted uncertainty and the runner's own
description as they are."""

from __future__ import annotations

import numpy as np
import torch
from misr_engine import SCALE
from misr_engine.inference.backends import RefinedRunner


class NetworkStandIn:
    """A runner whose SR is the first frame repeated onto the HR grid, its log-scale a ramp."""

    backend, provider, default_batch = "torch", "cpu", 3

    def __call__(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        sr = frames[:, :1].repeat(SCALE, axis=-2).repeat(SCALE, axis=-1)
        log_scale = np.broadcast_to(np.linspace(-1.0, 1.0, sr.shape[-1], dtype=np.float32), sr.shape)
        return np.concatenate([sr, log_scale], axis=1)


def _inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(2, 4, 6, 5)).astype(np.float32)
    masks = (rng.random(frames.shape) > 0.2).astype(np.float32)
    return frames, masks, rng.uniform(-0.5, 0.5, (2, 4, 2)).astype(np.float32)


def test_refinements_rework_the_sr_in_order_from_the_tile_and_keep_the_uncertainty():
    frames, masks, phases = _inputs()
    seen = []

    def add_clear_count(sr, f, m, p):  # needs the tile's own masks, as the gate and the back-projection do
        seen.append((f.numpy().copy(), m.numpy().copy(), p.numpy().copy()))
        return sr + m.sum(dim=1, keepdim=True).repeat_interleave(SCALE, -2).repeat_interleave(SCALE, -1)

    def double(sr, *_):
        return 2.0 * sr

    plain = NetworkStandIn()(frames, masks, phases)
    refined = RefinedRunner(NetworkStandIn(), [add_clear_count, double])(frames, masks, phases)
    counts = masks.sum(axis=1, keepdims=True).repeat(SCALE, axis=-2).repeat(SCALE, axis=-1)
    np.testing.assert_allclose(refined[:, :1], 2.0 * (plain[:, :1] + counts), rtol=1e-6)  # not (2 sr) + count
    np.testing.assert_array_equal(refined[:, 1:], plain[:, 1:])
    for given, expected in zip(seen[0], (frames, masks, phases)):
        np.testing.assert_array_equal(given, expected)


def test_no_refinement_keeps_the_network_output_and_its_description():
    frames, masks, phases = _inputs()
    runner = RefinedRunner(NetworkStandIn(), [])
    np.testing.assert_array_equal(runner(frames, masks, phases), NetworkStandIn()(frames, masks, phases))
    assert (runner.backend, runner.provider, runner.default_batch) == ("torch", "cpu", 3)
    assert runner.refine_device == torch.device("cpu")  # the stand-in names no torch device
