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
                "card": "/w/piunet.md",
                "weights_options": [{"name": "supervised", "label": "supervised", "weights": "/w/piunet.safetensors",
                                     "card": "/w/piunet.md"},
                                    {"name": "self-supervised", "label": "self-supervised (no HR)",
                                     "weights": "/w/piunet_ssl.safetensors", "card": None}]},
               {"name": "fixednet", "label": "FixedNet", "weights": "/w/fixednet.safetensors",
                "default": False, "capabilities": ["uncertainty"]},
               {"name": "deepsum", "label": "DeepSUM", "weights": None, "default": False}],
    "limits": {"scale": 3, "min_tile_size": 24, "default_tile_size": 128, "max_frames": 15,
               "screening_pool": 2, "min_ttf_frames": 3, "sensor_mtf_range": [0.02, 0.6], "engine_mtf": 0.289,
               "other_footprints": True},
}
"""A `misr models --json` answer in the engine's new format: two runnable models (one not
fine-tunable), one without weights, and a minimum tile size other than today's 16."""


BASE_OPTIONS = ("[--ttf-steps N] [--kernels-out FILE] [--sensor-mtf MTF] [--reference-frame FILE] [--keep-noisy-frames] "
                "[--align] [--tile-size PX]")
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


PIP_OUTPUTS = {
    "ok": ("Collecting torch==2.13.0\nSuccessfully installed torch-2.13.0", 0),
    "network": ("WARNING: Retrying (Retry(total=1)) after connection broken by 'NewConnectionError("
                "'<HTTPSConnection>: Failed to establish a new connection: [Errno -3] Temporary "
                "failure in name resolution')': /simple/torch/\nERROR: Could not find a version that "
                "satisfies the requirement torch==2.13.0 (from versions: none)\nERROR: No matching "
                "distribution found for torch==2.13.0", 1),
    "disk": ("Collecting torch==2.13.0\nERROR: Could not install packages due to an OSError: "
             "[Errno 28] No space left on device", 1),
    "broken": ("Collecting misr-engine\nERROR: something unexpected happened", 1),
}
"""What a stand-in pip prints, and its exit status, for FAKE_PIP=<mode>."""


def fake_python(folder, version=None) -> Path:
    """A stand-in for the Python QGIS runs on, for the engine set-up tests: it reports
    `version` (default: this Python's), and its ``-m venv`` makes an environment whose python
    answers the set-up's steps (pip as FAKE_PIP says, see PIP_OUTPUTS; FAKE_PIP=hang sleeps),
    whose misr answers ``models --json``; FAKE_VENV=missing makes ``-m venv`` fail like a Debian
    without python3-venv. Every call is appended to <folder>/calls.txt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    version = version or "%d.%d" % sys.version_info[:2]
    calls = folder / "calls.txt"
    models = json.dumps(NEW_MODELS_ANSWER)
    venv_python = textwrap.dedent(f"""
        import json, os, sys, time
        args = sys.argv[1:]
        open({str(calls)!r}, "a").write(json.dumps(args) + "\\n")
        if args[:1] == ["-c"]:
            open(args[-1], "w").write("numpy==1.24.2\\n")
        elif args[:3] == ["-m", "pip", "install"] or args[:3] == ["-m", "pip", "uninstall"]:
            mode = os.environ.get("FAKE_PIP", "ok")
            if args[-1].endswith(".whl") or args[2] == "uninstall":
                mode = os.environ.get("FAKE_PIP_ENGINE", "ok")
            if mode == "hang":
                print("Collecting torch==2.13.0", flush=True)
                time.sleep(60)
            text, status = {PIP_OUTPUTS!r}[mode]
            print(text, flush=True)
            sys.exit(status)
    """)
    misr = f"import sys\nprint({models!r})\n"
    script = folder / "python3"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""
        import json, os, stat, sys
        args = sys.argv[1:]
        open({str(calls)!r}, "a").write(json.dumps(args) + "\\n")
        if args[:1] == ["-c"]:
            print({version!r})
        elif args[:2] == ["-m", "venv"]:
            target = args[-1]
            os.makedirs(os.path.join(target, "bin"), exist_ok=True)
            if os.environ.get("FAKE_VENV") == "missing":
                print("The virtual environment was not created successfully because ensurepip is not "
                      "available.  On Debian/Ubuntu systems, you need to install the python3-venv package")
                sys.exit(1)
            open(os.path.join(target, "pyvenv.cfg"), "w").write("include-system-site-packages = true\\n")
            for name, body in (("python", {venv_python!r}), ("misr", {misr!r})):
                path = os.path.join(target, "bin", name)
                open(path, "w").write("#!{sys.executable}\\n" + body)
                os.chmod(path, 0o755)
    """))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def fake_calls(python: Path) -> list:
    """The argument lists the stand-in pythons of `python`'s folder were called with."""
    path = Path(python).parent / "calls.txt"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def writes_rasters(frames_used=None, device: str = "cpu") -> str:
    """A `run_body` for fake_engine that behaves like the engine on the outside: a ``start``
    event counting `frames_used` frames (default: all), then real float32 GeoTIFFs on the first
    frame's grid refined x3 (SR: the frame's values; uncertainty: a ramp from 5 to 50, so that
    a legend of 0-1 is wrong), then ``done``."""
    return f"""
        import numpy as np
        from osgeo import gdal
        frames = args[args.index("--frames") + 1:]
        frames = frames[:min(i for i, a in enumerate(frames + ["--"]) if a.startswith("--"))]
        out = args[args.index("--output") + 1]
        unc = args[args.index("--uncertainty") + 1] if "--uncertainty" in args else None
        used = {frames_used!r} or len(frames)
        print(json.dumps({{"event": "start", "frames": used, "model": "piunet", "device": {device!r}}}), flush=True)
        lr = gdal.Open(frames[0])
        x0, dx, _, y0, _, dy = lr.GetGeoTransform()
        width, height = 3 * lr.RasterXSize, 3 * lr.RasterYSize
        sr_values = np.kron(lr.GetRasterBand(1).ReadAsArray().astype(np.float32), np.ones((3, 3), np.float32))
        unc_values = np.linspace(5.0, 50.0, width * height, dtype=np.float32).reshape(height, width)
        for path, values in ((out, sr_values), (unc, unc_values)):
            if path:
                ds = gdal.GetDriverByName("GTiff").Create(path, width, height, 1, gdal.GDT_Float32)
                ds.SetGeoTransform((x0, dx / 3, 0.0, y0, 0.0, dy / 3))
                ds.SetProjection(lr.GetProjection())
                ds.GetRasterBand(1).WriteArray(values)
                ds = None
        print(json.dumps({{"event": "done", "output": out, "uncertainty": unc, "device": {device!r},
                          "seconds": 0.2}}), flush=True)
    """


def sleeps_after_start(seconds: float = 60.0, fraction: float = 0.1, message: str = "tile 1/10") -> str:
    """A `run_body` for fake_engine that starts, reports `fraction` and `message`, then works until
    stopped: on SIGTERM it says so in an ``error`` event and exits with 130, like the engine."""
    return f"""
        import signal, time
        def stop(*_):
            print(json.dumps({{"event": "error", "message": "interrupted"}}), flush=True)
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        print(json.dumps({{"event": "start", "frames": 3, "model": "piunet", "device": "cpu"}}), flush=True)
        print(json.dumps({{"event": "progress", "fraction": {fraction!r}, "message": {message!r}}}), flush=True)
        time.sleep({seconds})
    """
