"""What every training run does first, whatever it trains."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch


def start_run(config: Any) -> Path:
    """Create the run folder `config.out_dir`, write the config there (config.json), set torch's
    CPU threads (`config.threads`, 0: torch's default) and seed torch (`config.seed`)."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    return out
