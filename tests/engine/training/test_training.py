"""Dataset building, the compensated losses and a short training run on real imagery."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from misr_engine.datasets.samples import MARGIN, build_samples, save_samples
from misr_engine.training.losses import LOSSES, compensated_loss
from misr_engine.models.sampling import resample_at_phases
from misr_engine.models.piunet import PIUnet, PIUnetConfig, fill_cloudy
from misr_engine.rasters.bands import read_band
from misr_engine.registration.stack import register, register_stack, subpixel_phase
from misr_engine.datasets.simulate import Degradation, degrade
from misr_engine.training.trainer import (SupervisedTask, TrainConfig, crop_frames, draw_frame_count, jitter_phases,
                                          loss_at, train, transform_shifts, warm_start, with_context, wrap_phases)
from misr_engine.models.weights import save_weights

from tests.rasters import HOLDOUT_HR


def test_compensated_loss_ignores_a_shift_within_the_border_and_a_brightness_offset():
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(rng.standard_normal((1, 1, 40, 40)).astype(np.float32))
    sr = torch.roll(hr, shifts=(2, -1), dims=(2, 3)) + 0.7  # shifted by (2, -1) px, brighter
    ones = torch.ones_like(hr)
    zero = torch.zeros_like(hr)
    assert compensated_loss(LOSSES["l1"], sr, zero, hr, ones).item() < 1e-6
    # a shift beyond the 3-pixel border is not compensated
    far = torch.roll(hr, shifts=(5, 0), dims=(2, 3))
    assert compensated_loss(LOSSES["l1"], far, zero, hr, ones).item() > 0.3
    # masked HR pixels do not count
    damaged = hr.clone()
    damaged[..., 10:20, 10:20] = 100.0
    mask = ones.clone()
    mask[..., 10:20, 10:20] = 0
    assert compensated_loss(LOSSES["l1"], sr, zero, damaged, mask).item() < 1e-6


def test_laplace_nll_is_minimised_by_the_true_absolute_error():
    error = torch.full((1, 1, 8, 8), 0.5)
    scores = {s: LOSSES["nll"](error, torch.full_like(error, np.log(s))).mean().item() for s in (0.25, 0.5, 1.0)}
    assert scores[0.5] < scores[0.25] and scores[0.5] < scores[1.0]


def test_dataset_builder_degrades_and_registers_real_crops(tiny_dataset):
    data = dict(np.load(tiny_dataset[0]))
    assert data["frames"].shape == (24, 6, 16, 16) and data["hr"].shape == (24, 48, 48)
    assert data["masks"].dtype == bool and 0.3 < data["masks"].mean() < 1.0  # some clouds
    # frames look like the HR seen at 30 m: close to its 3x3 block means, not identical
    block_means = data["hr"].reshape(24, 16, 3, 16, 3).mean(axis=(2, 4))
    clear = data["masks"][:, 0]
    relative = np.abs(data["frames"][:, 0] - block_means)[clear].mean() / data["hr"].std()
    assert 0.01 < relative < 0.5
    # every registered frame carries its sub-pixel phase; they spread over the whole pixel
    phases = data["shifts"]
    assert phases.shape == (24, 6, 2) and np.abs(phases).max() <= 0.5
    assert np.abs(phases).mean() > 0.15


def test_augmented_shifts_are_the_shifts_registration_finds_in_the_augmented_stack():
    hr = read_band(str(HOLDOUT_HR))[0][:16 * 3 + 2 * MARGIN, :16 * 3 + 2 * MARGIN]
    stack = degrade(hr, 5, np.random.default_rng(4), Degradation(cloud_probability=0.0), MARGIN)
    shifts = register_stack(stack.frames, stack.masks)
    assert np.abs(shifts).max() > 0.2
    for k in range(4):
        for flip in (False, True):
            def transform(a):
                a = np.rot90(a, k, axes=(-2, -1))
                return np.ascontiguousarray(a[..., ::-1] if flip else a)
            found = register_stack(transform(stack.frames), transform(stack.masks))
            # the reference (clearest, then sharpest) may change with the rotation: compare the
            # shifts relative to frame 0 (then estimated against another frame: within 0.03 px)
            np.testing.assert_allclose(found - found[0], transform_shifts(shifts - shifts[0], k, flip), atol=0.03)


def test_frames_shown_across_the_half_pixel_are_where_their_wrapped_phases_say():
    hr = read_band(str(HOLDOUT_HR))[0][:24 * 3 + 2 * MARGIN, :24 * 3 + 2 * MARGIN]
    stack = degrade(hr, 6, np.random.default_rng(5), Degradation(cloud_probability=0.0), MARGIN)
    frames, masks, shifts = register(stack.frames, stack.masks)
    phases, moves = wrap_phases(subpixel_phase(shifts), 0.5, np.random.default_rng(0))  # every frame near
    assert np.abs(moves).sum() >= 3 and np.abs(phases).max() > 0.5
    np.testing.assert_array_equal(moves, np.round(subpixel_phase(shifts) - phases))
    crops, crop_masks = crop_frames(frames, masks, (1, 1), 22, moves)
    found = register_stack(crops, crop_masks)
    # each crop, one pixel further where moved, sits where its new phase says (against frame 0)
    np.testing.assert_allclose(found - found[0], phases - phases[0], atol=0.05)
    # near-only: phases far from the half pixel are never moved
    far, far_moves = wrap_phases(np.full((50, 2), 0.3, np.float32), 0.1, np.random.default_rng(1))
    assert not far_moves.any() and np.allclose(far, 0.3)


def test_jittered_phases_carry_the_registration_error_asked_for():
    phases = np.random.default_rng(2).uniform(-0.5, 0.5, (20_000, 2)).astype(np.float32)
    error = jitter_phases(phases, 0.03, np.random.default_rng(3)) - phases
    assert abs(error.std() - 0.03) < 0.001 and abs(error.mean()) < 0.001
    assert abs(np.corrcoef(error[:, 0], error[:, 1])[0, 1]) < 0.03  # each axis its own error


def test_inverse_frame_counts_favour_few_frame_stacks_and_uniform_draws_every_count_alike():
    def shares(config: TrainConfig, available: int) -> np.ndarray:
        rng = np.random.default_rng(0)
        return np.bincount([draw_frame_count(config, available, rng) for _ in range(20000)], minlength=16) / 20000
    kwargs = {"train_data": "", "val_data": "", "out_dir": "", "t_min": 2, "t_max": 15}
    uniform, inverse = (shares(TrainConfig(**kwargs, frame_counts=k), 15) for k in ("uniform", "inverse"))
    assert uniform[:2].sum() == 0 and np.allclose(uniform[2:], 1 / 14, atol=0.01)
    expected = np.zeros(16)
    expected[2:] = 1 / np.arange(2, 16)
    assert np.allclose(inverse, expected / expected.sum(), atol=0.01)  # 2-3 frames: 36% of steps instead of 14%
    assert shares(TrainConfig(**kwargs, frame_counts="inverse"), 6)[7:].sum() == 0  # never more than the stack has


def test_udl_runs_after_l1_and_an_l_eu_warm_up():
    config = TrainConfig("a", "b", "c", l1_warmup_steps=10, loss="udl", eu_warmup_steps=5)
    assert [loss_at(s, config) for s in (0, 9, 10, 14, 15, 99)] == ["l1", "l1", "nll", "nll", "udl", "udl"]
    assert loss_at(12, TrainConfig("a", "b", "c", l1_warmup_steps=10, loss="nll", eu_warmup_steps=5)) == "nll"


def test_warm_start_widens_the_first_layer_and_keeps_what_the_model_computed(tmp_path):
    torch.manual_seed(0)
    old = PIUnet(PIUnetConfig(n_feat=8, n_tefa=1, bottleneck=2)).eval()
    save_weights(old, tmp_path / "old.safetensors", {})
    new = PIUnet(PIUnetConfig(n_feat=8, n_tefa=1, bottleneck=2, phase_inputs=True)).eval()
    lines = []
    warm_start(new, str(tmp_path / "old.safetensors"), [], lines.append)
    assert "widened ['head.conv.weight']" in lines[0]
    frames, masks = torch.randn(1, 4, 10, 10), (torch.rand(1, 4, 10, 10) > 0.2).float()
    phases = torch.rand(1, 4, 2) - 0.5
    with torch.no_grad():
        (mean_old, scale_old), (mean_new, scale_new) = old(frames, masks), new(frames, masks, phases)
        # the phase channels start with zero weight: the learned parts compute what they did
        torch.testing.assert_close(scale_old, scale_new)
        filled = fill_cloudy(frames, masks)
        hr_frames = resample_at_phases(filled, phases, "bicubic")
        hr_weights = resample_at_phases(masks, phases, "bilinear")
        torch.testing.assert_close(mean_old - old.global_residual(filled, masks, None, None),
                                   mean_new - new.global_residual(filled, masks, hr_frames, hr_weights))


def test_a_short_training_run_lowers_the_loss_and_resumes(tiny_dataset, tmp_path):
    config = TrainConfig(train_data=str(tiny_dataset[0]), val_data=str(tiny_dataset[1]), out_dir=str(tmp_path),
                         model_config={"n_feat": 8, "n_tefa": 1, "bottleneck": 2}, steps=40, batch_size=4,
                         patch_lr=12, t_min=2, t_max=6, learning_rate=2e-3, l1_warmup_steps=100,
                         val_every=10, val_frames=4)
    lines = []
    train(TrainConfig(**{**config.__dict__, "steps": 20}), log=lines.append)
    weights = train(config, log=lines.append)
    assert any("resumed at step 20" in line for line in lines)
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.reader(handle))
    assert [int(r[0]) for r in rows] == [10, 20, 30, 40]
    assert float(rows[-1][2]) < float(rows[0][2])
    assert weights.is_file() and (tmp_path / "curves.png").is_file()


@pytest.mark.parametrize("loss, precision", [("udl", "fp32"), ("nll", "bf16")])
def test_phase_model_trains_with_udl_and_with_mixed_precision(tiny_dataset, tmp_path, loss, precision):
    """The shipped configuration (phases, Wiener-initialised deconvolution), warm-started from
    a model without phases; bf16 autocast runs on the CPU too, so its code path is tested here."""
    base = TrainConfig(train_data=str(tiny_dataset[0]), val_data=str(tiny_dataset[1]), out_dir=str(tmp_path / "base"),
                       model_config={"n_feat": 8, "n_tefa": 1, "bottleneck": 2}, steps=10, batch_size=4,
                       patch_lr=12, t_min=2, t_max=6, val_every=10, val_frames=4)
    first = train(base, log=lambda line: None)
    config = TrainConfig(**{**base.__dict__, "out_dir": str(tmp_path / "phases"), "steps": 30, "val_every": 10,
                            "model_config": {**base.model_config, "phase_inputs": True, "deconv_kernel": 7},
                            "init_weights": str(first), "init_skip": ["to_mean"], "l1_warmup_steps": 0,
                            "loss": loss, "eu_warmup_steps": 10, "learning_rate": 2e-3, "precision": precision})
    lines = []
    train(config, log=lines.append)
    assert "widened ['head.conv.weight']" in lines[0]
    with open(tmp_path / "phases" / "log.csv") as handle:
        rows = list(csv.reader(handle))
    assert [r[1] for r in rows] == (["nll", "udl", "udl"] if loss == "udl" else ["nll"] * 3)
    assert float(rows[-1][2]) < float(rows[0][2]) if loss == "nll" else np.isfinite(float(rows[-1][2]))


def test_evaluate_reports_every_baseline_the_model_and_the_compared_weights(tiny_dataset, tmp_path):
    import json
    import subprocess
    import sys

    config = TrainConfig(train_data=str(tiny_dataset[0]), val_data=str(tiny_dataset[1]), out_dir=str(tmp_path / "a"),
                         model_config={"n_feat": 8, "n_tefa": 1, "bottleneck": 2, "phase_inputs": True,
                                       "deconv_kernel": 7}, steps=10, batch_size=4, patch_lr=12, t_min=2,
                         t_max=6, val_every=10, val_frames=4, l1_warmup_steps=0)
    first = train(config, log=lambda line: None)
    second = train(TrainConfig(**{**config.__dict__, "out_dir": str(tmp_path / "b"), "loss": "udl"}),
                   log=lambda line: None)
    window = ((0, None), (0, None))
    raw = build_samples([str(HOLDOUT_HR)], window, 3, 20, 5, seed=3, workers=1, registered=False)
    save_samples(tmp_path / "raw.npz", {**raw, "registered": np.array(False)})
    result = subprocess.run([sys.executable, "-m", "misr_engine.cli", "evaluate", "--data", str(tmp_path / "raw.npz"),
                             "--weights", str(first), "--compare", str(second), "--out", str(tmp_path / "report")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "report" / "report.md").read_text()
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    methods = results["sets"]["data"]["methods"]
    for method in ("bicubic_masked_mean", "registered_mean", "registered_mean_wiener", "ibp", "strongest_classical",
                   "piunet", "piunet (1)"):
        assert method in report and np.isfinite(methods[method]["cpsnr_mean"])
    assert f"| piunet (1) | `{second}` |" in report and "loss udl" in report
    for figure in ("sparsification.png", "calibration.png", "examples_data.png"):
        assert (tmp_path / "report" / figure).stat().st_size > 1000


def test_train_command_reports_progress_per_step_and_validation_lines(tiny_dataset, tmp_path):
    import json
    import subprocess
    import sys

    config = {"train_data": str(tiny_dataset[0]), "val_data": str(tiny_dataset[1]), "out_dir": str(tmp_path / "run"),
              "model_config": {"n_feat": 8, "n_tefa": 1, "bottleneck": 2}, "steps": 4, "batch_size": 2,
              "patch_lr": 12, "t_min": 2, "t_max": 4, "val_every": 2, "val_frames": 4}
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = subprocess.run([sys.executable, "-m", "misr_engine.cli", "train", "--config", str(tmp_path / "config.json"),
                             "--progress", "json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == [0.25, 0.5, 0.75, 1.0]
    assert sum("val cPSNR" in e.get("message", "") for e in events if e["event"] == "log") == 2


def test_evaluate_ignores_hr_pixels_marked_unusable_in_the_status_map():
    from misr_engine.evaluation.baselines import BASELINES
    from misr_engine.evaluation.scores import evaluate

    window = ((0, None), (0, None))
    scenes = build_samples([str(HOLDOUT_HR)], window, 2, 20, 4, seed=5, workers=1, registered=False)
    methods = {"registered_mean": BASELINES["registered_mean"]}
    clean = evaluate(scenes, methods)[0].cpsnr
    damaged = dict(scenes, hr=scenes["hr"].copy())
    damaged["hr"][:, 20:30, 20:40] += 3000.0  # e.g. a cloud in the HR target
    assert evaluate(damaged, methods)[0].mean < np.mean(clean) - 3
    damaged["hr_mask"] = np.ones(scenes["hr"].shape, bool)
    damaged["hr_mask"][:, 20:30, 20:40] = False
    masked = evaluate(damaged, methods)[0].cpsnr
    np.testing.assert_allclose(masked, clean, atol=0.5)


def test_training_context_is_the_mirrored_context_tiled_inference_gives_the_network():
    """With `edge_context` the network is trained on what it runs on: the same output as
    ``inference.tiled`` gives it, the outer pixels included."""
    from misr_engine.inference.tiled import EDGE_CONTEXT, _run_with_context
    torch.manual_seed(0)
    model = PIUnet(PIUnetConfig(n_feat=8, n_tefa=1, bottleneck=2, phase_inputs=True, deconv_kernel=7)).eval()
    frames = torch.randn(2, 4, 12, 12)
    masks = (torch.rand(2, 4, 12, 12) > 0.2).float()
    phases = torch.rand(2, 4, 2) - 0.5
    with torch.no_grad():
        trained = torch.cat(with_context(model, frames, masks, phases, EDGE_CONTEXT), dim=1).numpy()
        plain = torch.cat(with_context(model, frames, masks, phases, 0), dim=1).numpy()

        def runner(f, m, p):
            return torch.cat(model(*(torch.from_numpy(np.asarray(a, np.float32)) for a in (f, m, p))), dim=1).numpy()
        tiled = _run_with_context(runner, frames.numpy(), masks.numpy().astype(bool), phases.numpy())
    assert trained.shape == plain.shape == (2, 2, 36, 36)
    np.testing.assert_allclose(trained, tiled, atol=1e-5)
    assert np.abs(trained - plain)[..., :3, :].max() > 1e-3  # the outer pixels see other context


def test_a_run_with_edge_context_counts_the_outer_pixels(tiny_dataset, tmp_path):
    config = TrainConfig(train_data=str(tiny_dataset[0]), val_data=str(tiny_dataset[1]), out_dir=str(tmp_path),
                         model_config={"n_feat": 8, "n_tefa": 1, "bottleneck": 2}, steps=2, batch_size=2,
                         patch_lr=12, t_min=2, t_max=6, val_every=2, val_frames=4, edge_context=2)
    task = SupervisedTask(config, torch.device("cpu"))
    mean, target = torch.zeros(1, 1, 36, 36), torch.zeros(1, 1, 36, 36)
    target[..., 0, :] = 1.0  # an error on the outermost row only
    loss = task.loss(LOSSES["l1"], mean, torch.zeros_like(mean), target, torch.ones_like(target))
    assert float(loss) > 0
    assert train(config, log=lambda line: None).is_file()
