"""A stand-in `misr` for the plugin tests (no QGIS needed): it answers the plugin's probe with
models in the engine's new `misr models --json` format, and runs what a test tells it to."""

from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path

NEW_MODELS_ANSWER = {
    "models": [{"name": "piunet", "label": "PIUnet", "weights": "/w/piunet.safetensors", "default": True,
                "capabilities": ["uncertainty", "order-invariant", "fine-tunable", "onnx"],
                "card": "/w/piunet.md"},
               {"name": "fixednet", "label": "FixedNet", "weights": "/w/fixednet.safetensors",
                "default": False, "capabilities": ["uncertainty"]},
               {"name": "deepsum", "label": "DeepSUM", "weights": None, "default": False}],
    "limits": {"scale": 3, "min_tile_size": 24, "default_tile_size": 128, "max_frames": 15,
               "min_ttf_frames": 3},
}
"""A `misr models --json` answer in the engine's new format: two runnable models (one not
fine-tunable), one without weights, and a minimum tile size other than today's 16."""


BASE_OPTIONS = "[--ttf-steps N] [--align] [--tile-size PX]"
ANALYST_OPTIONS = BASE_OPTIONS + (" [--bands LIST] [--mask-kind KIND] [--mask-snow] [--mask-dark-areas]"
                                  " [--mask-dilation PX] [--no-auto-mask]")
"""A `--help` listing the options of masks, screening and bands too (an engine with issue 17)."""


def fake_engine(folder, models=None, run_body: str = "sys.exit(0)", options: str = BASE_OPTIONS) -> Path:
    """An executable stand-in `misr` in `folder`: it answers the plugin's probe (``--help`` lists
    `options`: by default --ttf-steps and --align, `models` prints `models`, `devices` a CPU) and
    runs `run_body` (Python, with json and sys imported) for ``super-resolve``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "misr"
    answer = json.dumps(NEW_MODELS_ANSWER if models is None else models)
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""
        import json, sys
        args = sys.argv[1:]
        if args == ["--version"]:
            print("misr 0.0-test")
        elif args == ["super-resolve", "--help"]:
            print("usage: misr super-resolve --frames F {options}")
        elif args == ["models", "--json"]:
            print({answer!r})
        elif args == ["devices", "--json"]:
            print(json.dumps({{"torch": "0", "cuda": False, "devices": [{{"id": "cpu", "name": "CPU"}}]}}))
        else:
    """) + textwrap.indent(textwrap.dedent(run_body), "    ") + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def writes_outputs(device: str = "cpu") -> str:
    """A `run_body` for fake_engine: start, a warning, the outputs written, done on `device`."""
    return f"""
        out = args[args.index("--output") + 1]
        unc = args[args.index("--uncertainty") + 1] if "--uncertainty" in args else None
        print(json.dumps({{"event": "start", "frames": 2, "model": "piunet", "device": {device!r}}}), flush=True)
        print(json.dumps({{"event": "warning", "message": "frame b.tif is fully cloudy: dropped"}}), flush=True)
        for path in (out, unc):
            if path:
                open(path, "w").write("x")
        print(json.dumps({{"event": "done", "output": out, "uncertainty": unc, "device": {device!r},
                          "seconds": 0.5}}), flush=True)
    """
