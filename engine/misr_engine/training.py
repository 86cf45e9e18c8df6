"""Supervised training of a MISR network on stacks built by ``dataset.build_samples``.

Each step draws random samples, a random number of frames (t_min..t_max) in a random order,
a random crop and a random flip/rotation, normalises them like the engine does per scene
(with jittered statistics, so the network does not depend on the exact normalisation), and
minimises a registration- and brightness-compensated loss. Checkpoints make it resumable.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import SCALE
from .dataset import load_samples
from .losses import LOSSES, compensated_loss
from .metrics import cpsnr
from .models import build_model
from .report import plot_training_curves
from .weights import save_weights

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    train_data: str
    val_data: str
    out_dir: str
    model: str = "piunet"
    model_config: dict = field(default_factory=lambda: {"n_feat": 32, "n_tefa": 4, "bottleneck": 4})
    steps: int = 2000
    batch_size: int = 8
    patch_lr: int = 32
    t_min: int = 3
    t_max: int = 12
    learning_rate: float = 5e-4
    l1_warmup_steps: int = 300
    loss: str = "nll"  # after the L1 warm-up: nll or udl
    grad_clip: float = 15.0
    val_every: int = 200
    val_frames: int = 9
    data_range: float = 10000.0  # Sentinel-2 L1C digital numbers per unit reflectance
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        return cls(**json.loads(Path(path).read_text()))


def _augment(frames: np.ndarray, masks: np.ndarray, hr: np.ndarray, rng: np.random.Generator):
    k, flip = rng.integers(4), rng.random() < 0.5
    def transform(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(-2, -1))
        return np.ascontiguousarray(a[..., ::-1] if flip else a)
    return transform(frames), transform(masks), transform(hr)


def sample_batch(data: dict[str, np.ndarray], config: TrainConfig, rng: np.random.Generator,
                 device: torch.device) -> tuple[torch.Tensor, ...]:
    """A normalised training batch: frames, masks (B,T,p,p), HR, HR mask (B,1,3p,3p)."""
    n, t_all, size = data["frames"].shape[:3]
    t = int(rng.integers(config.t_min, min(config.t_max, t_all) + 1))
    p = config.patch_lr
    batch = [[], [], [], []]
    for index in rng.integers(0, n, config.batch_size):
        order = rng.permutation(t_all)[:t]
        y, x = rng.integers(0, size - p + 1, size=2)
        frames = data["frames"][index, order, y:y + p, x:x + p]
        masks = data["masks"][index, order, y:y + p, x:x + p]
        hr = data["hr"][index, SCALE * y:SCALE * (y + p), SCALE * x:SCALE * (x + p)]
        frames, masks, hr = _augment(frames, masks, hr, rng)
        centre, spread = data["norm"][index]
        spread = spread * float(np.exp(rng.uniform(-0.4, 0.4)))
        centre = centre + rng.normal(0, 0.2) * spread
        batch[0].append(np.where(masks, (frames - centre) / spread, 0.0))
        batch[1].append(masks)
        batch[2].append((hr - centre) / spread)
        batch[3].append(np.ones_like(hr))
    frames, masks, hr, hr_mask = (torch.from_numpy(np.stack(b).astype(np.float32)).to(device) for b in batch)
    return frames, masks, hr[:, None], hr_mask[:, None]


@torch.inference_mode()
def validate(model: torch.nn.Module, data: dict[str, np.ndarray], config: TrainConfig,
             device: torch.device) -> dict[str, float]:
    """Mean cPSNR (dB) and compensated L1 on the first `val_frames` frames of every sample."""
    model.eval()
    scores = []
    for index in range(len(data["frames"])):
        frames = data["frames"][index, :config.val_frames]
        masks = data["masks"][index, :config.val_frames]
        centre, spread = data["norm"][index]
        x = torch.from_numpy(np.where(masks, (frames - centre) / spread, 0.0).astype(np.float32))[None]
        m = torch.from_numpy(masks.astype(np.float32))[None]
        mean, _ = model(x.to(device), m.to(device))
        sr = mean[0, 0].float().cpu().numpy() * spread + centre
        scores.append(cpsnr(sr / config.data_range, data["hr"][index] / config.data_range))
    model.train()
    return {"val_cpsnr": float(np.mean(scores))}


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Cosine decay from `learning_rate` to 1/20 of it over `steps` (stateless, so resuming is exact)."""
    low = config.learning_rate / 20
    return float(low + (config.learning_rate - low) * 0.5 * (1 + np.cos(np.pi * min(step, config.steps) / config.steps)))


def train(config: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train, resuming from `out_dir`/checkpoint.pt if present. Returns the final weights path."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_data, val_data = load_samples(config.train_data), load_samples(config.val_data)
    model = build_model(config.model, config.model_config).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    step, history = 0, []
    if (out / CHECKPOINT).exists():
        state = torch.load(out / CHECKPOINT, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step = int(state["step"])
        log(f"resumed at step {step}")
    rng = np.random.default_rng(config.seed + step)
    model.train()
    started, running = time.perf_counter(), []
    with open(out / "log.csv", "a", newline="") as log_file:
        writer = csv.writer(log_file)
        while step < config.steps:
            frames, masks, hr, hr_mask = sample_batch(train_data, config, rng, device)
            mean, log_scale = model(frames, masks)
            loss_name = "l1" if step < config.l1_warmup_steps else config.loss
            loss = compensated_loss(LOSSES[loss_name], mean, log_scale, hr, hr_mask)
            for group in optimiser.param_groups:
                group["lr"] = learning_rate_at(step, config)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimiser.step()
            step += 1
            running.append(loss.item())
            if step % config.val_every == 0 or step == config.steps:
                scores = validate(model, val_data, config, device)
                row = [step, loss_name, float(np.mean(running)), scores["val_cpsnr"],
                       round(time.perf_counter() - started, 1)]
                writer.writerow(row)
                log_file.flush()
                log(f"step {step}: {loss_name} loss {row[2]:.4f}, val cPSNR {row[3]:.2f} dB, {row[4]} s")
                running = []
                torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                            "step": step}, out / CHECKPOINT)
    plot_training_curves(out / "log.csv", out / "curves.png")
    weights = out / f"{config.model}.safetensors"
    save_weights(model, weights, {"training": asdict(config), "device": str(device),
                                  "torch": torch.__version__})
    return weights
