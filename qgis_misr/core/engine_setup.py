"""Setting up the engine from inside QGIS, without a terminal.

The engine gets its own virtual environment, made from the Python QGIS runs on with its system
site packages (so the engine sees the same GDAL bindings): PyTorch pinned to one release (for
the CPU, or the CUDA build when an NVIDIA GPU is seen), the engine from the wheel shipped inside
the plugin (or the repository's ``engine/`` when the plugin runs from a checkout), then ONNX
Runtime to match (``onnxruntime-gpu`` with CUDA). Every step is a subprocess whose output goes
to a log; a failed step is explained in one line (no network, no venv module, a full disk...).

No Qt here: qgis_misr/setup_task.py runs :func:`run_setup` in a QgsTask.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from . import userfiles
from .engine import IS_WINDOWS, popen_flags, subprocess_environment
from .runner import EngineProcess

TORCH_REQUIREMENT = "torch==2.13.0"
"""Pinned: an unpinned torch may resolve to a release with gigabytes of CUDA libraries."""
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
"""PyTorch's index of CPU-only wheels (PyPI's Linux and Windows wheels of torch are CUDA builds)."""
ENGINE_WHEEL_FOLDER = "engine"
"""Where the plugin zip ships the engine's wheel: qgis_misr/engine/misr_engine-<version>-*.whl."""
NEEDED_GB = {"cpu": 2.5, "cuda": 8.0}
"""Disk space a set-up needs (PyTorch and its libraries, the engine, pip's downloads)."""
PIP = ("-m", "pip", "install", "--disable-pip-version-check", "--retries", "2")
_CONSTRAINTS_CODE = ("import sys\ntry:\n    import numpy\n    line = 'numpy==' + numpy.__version__ + '\\n'\n"
                     "except ImportError:\n    line = ''\nopen(sys.argv[1], 'w').write(line)\n")
"""Writes numpy==<the system's version>: GDAL's bindings are compiled against it."""


@dataclass(frozen=True)
class SetupOptions:
    """What to set up where. `engine_source` is the engine's wheel (or source folder)."""

    target: Path
    python: str
    engine_source: str
    accelerator: str = "cpu"
    """``cpu`` or ``cuda``: which PyTorch and ONNX Runtime builds to install."""
    torch_requirement: str = TORCH_REQUIREMENT
    torch_pip_options: Tuple[str, ...] = ()
    """Extra pip options for PyTorch (e.g. ``--extra-index-url`` PyTorch's CPU index)."""

    @property
    def log_path(self) -> Path:
        return self.target.with_name(self.target.name + "-setup.log")


@dataclass(frozen=True)
class SetupStep:
    """One subprocess of the set-up; `weight` is its share of the progress bar."""

    title: str
    argv: Tuple[str, ...]
    weight: float


@dataclass
class SetupResult:
    """How a set-up ended: `engine` is the environment to configure; `reason` one line."""

    ok: bool
    engine: str = ""
    reason: str = ""
    canceled: bool = False
    log_path: str = ""
    tail: List[str] = field(default_factory=list)


def venv_python(target: Path) -> Path:
    return target / ("Scripts/python.exe" if IS_WINDOWS else "bin/python")


def venv_misr(target: Path) -> Path:
    return target / ("Scripts/misr.exe" if IS_WINDOWS else "bin/misr")


def is_environment(target: Path) -> bool:
    """Whether `target` already is a virtual environment (a set-up is then resumed in it)."""
    return (target / "pyvenv.cfg").is_file() and venv_python(target).is_file()


def default_target() -> Path:
    """Where the engine goes unless people choose otherwise (outside any QGIS profile)."""
    return userfiles.data_dir() / "engine"


def python_candidates() -> List[str]:
    """Executables that may be the Python QGIS runs on (inside QGIS, sys.executable is QGIS)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    names = [f"python{version}", f"python{sys.version_info[0]}", "python"]
    folders = [Path(sys.base_prefix) / ("" if IS_WINDOWS else "bin"), Path(sys.exec_prefix) / "bin"]
    found = [getattr(sys, "_base_executable", ""), sys.executable]
    found += [str(folder / (name + (".exe" if IS_WINDOWS else ""))) for folder in folders for name in names]
    found += [shutil.which(name) or "" for name in names]
    unique = []
    for path in found:
        if path and path not in unique and os.path.basename(path).lower().startswith("python"):
            unique.append(path)
    return unique


def find_python(candidates: Optional[Sequence[str]] = None,
                version: Tuple[int, int] = tuple(sys.version_info[:2])) -> Optional[str]:
    """The first candidate that runs and is Python `version` (QGIS's, so that the system site
    packages, GDAL's bindings among them, fit it)."""
    wanted = f"{version[0]}.{version[1]}"
    for candidate in python_candidates() if candidates is None else candidates:
        if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
            continue
        try:
            answer = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                    capture_output=True, text=True, timeout=30, env=subprocess_environment(),
                                    **popen_flags())
        except (OSError, subprocess.SubprocessError):
            continue
        if answer.returncode == 0 and answer.stdout.strip() == wanted:
            return candidate
    return None


def detect_accelerator() -> Tuple[str, str]:
    """(``cuda``, the GPUs) when ``nvidia-smi -L`` lists an NVIDIA GPU, else (``cpu``, why)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "cpu", "no NVIDIA driver found (nvidia-smi)"
    try:
        answer = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, **popen_flags())
    except (OSError, subprocess.SubprocessError) as exc:
        return "cpu", f"nvidia-smi failed: {exc}"
    gpus = [line.split(" (")[0].split(": ", 1)[-1] for line in answer.stdout.splitlines() if line.startswith("GPU")]
    if answer.returncode != 0 or not gpus:
        return "cpu", "nvidia-smi lists no GPU"
    return "cuda", ", ".join(gpus)


def default_torch_options(accelerator: str, platform: str = sys.platform) -> Tuple[str, ...]:
    """PyTorch's CPU index for a CPU set-up on Linux and Windows (where PyPI's torch is the
    CUDA build); nothing otherwise (macOS wheels have no CUDA; CUDA builds come from PyPI)."""
    if accelerator == "cpu" and (platform.startswith("linux") or platform.startswith("win")):
        return ("--extra-index-url", TORCH_CPU_INDEX)
    return ()


def engine_source(plugin_dir: Path) -> Optional[str]:
    """The engine to install: the newest wheel shipped in the plugin, else the repository's
    ``engine/`` folder when the plugin runs from a checkout, else None."""
    wheels = sorted((plugin_dir / ENGINE_WHEEL_FOLDER).glob("misr_engine-*.whl"))
    if wheels:
        return str(wheels[-1])
    folder = plugin_dir.resolve().parent / "engine"
    return str(folder) if (folder / "pyproject.toml").is_file() else None


def plan_steps(options: SetupOptions) -> List[SetupStep]:
    """The subprocesses of a set-up, in order (the environment is made only if missing)."""
    python = str(venv_python(options.target))
    constraints = str(options.target / "constraints.txt")
    pip = (python,) + PIP + ("-c", constraints)
    build = "CUDA" if options.accelerator == "cuda" else "CPU"
    steps = []
    if not is_environment(options.target):
        steps.append(SetupStep("Creating the Python environment",
                               (options.python, "-m", "venv", "--system-site-packages", str(options.target)), 5))
    steps.append(SetupStep("Keeping the system's numpy", (python, "-c", _CONSTRAINTS_CODE, constraints), 1))
    steps.append(SetupStep(f"Installing PyTorch ({build})",
                           pip + tuple(options.torch_pip_options) + (options.torch_requirement,), 60))
    steps.append(SetupStep("Installing the engine", pip + (options.engine_source,), 25))
    if options.accelerator == "cuda":
        steps.append(SetupStep("Replacing ONNX Runtime by its GPU build",
                               (python, "-m", "pip", "uninstall", "-y", "onnxruntime"), 1))
        steps.append(SetupStep("Installing ONNX Runtime (GPU)", pip + ("onnxruntime-gpu",), 5))
    steps.append(SetupStep("Checking the engine", (str(venv_misr(options.target)), "models", "--json"), 3))
    return steps


_NETWORK = ("failed to establish a new connection", "temporary failure in name resolution",
            "name or service not known", "network is unreachable", "connection refused",
            "read timed out", "connecttimeout", "connection timed out", "no route to host",
            "max retries exceeded", "could not fetch url", "proxyerror")
_NO_VENV = ("ensurepip is not available", "no module named venv", "no module named ensurepip")


def failure_reason(step: SetupStep, returncode: Optional[int], lines: Sequence[str]) -> str:
    """One line saying why `step` failed, from its output."""
    text = "\n".join(lines).lower()
    if "no space left on device" in text or "errno 28" in text:
        why = "the disk is full (No space left on device)"
    elif any(marker in text for marker in _NO_VENV):
        why = ("Python's venv module is missing: install it (Debian/Ubuntu: apt install "
               "python3-venv) and try again")
    elif "permission denied" in text or "errno 13" in text:
        why = "permission denied: choose a folder you can write to"
    elif any(marker in text for marker in _NETWORK):
        why = "no network: pip could not reach the package index (check the connection or proxy)"
    elif "no matching distribution" in text or "could not find a version" in text:
        missing = next((line.split("requirement", 1)[-1].strip(" :") for line in lines
                        if "could not find a version" in line.lower()), "a package")
        why = f"pip found no {missing} for this Python and platform"
    else:
        errors = [line.strip() for line in lines if line.strip().startswith("ERROR:")]
        other = [line.strip() for line in lines if line.strip()]
        why = (errors or other or [f"exit status {returncode}"])[-1]
        if why.startswith("ERROR:"):
            why = why[len("ERROR:"):].strip()
    return f"{step.title}: {why}"


def preflight(options: SetupOptions, needed_gb: Optional[float] = None) -> Optional[str]:
    """Why the set-up cannot start (no Python, no engine, no space, no write access), or None."""
    if not options.python:
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        return (f"no Python {version} (the version QGIS runs on) was found to create the "
                f"environment with")
    if not options.engine_source or not os.path.exists(options.engine_source):
        return ("the plugin has no engine to install (its zip ships engine/misr_engine-*.whl: "
                "build it with scripts/build_plugin_zip.py)")
    existing = options.target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not os.access(str(existing), os.W_OK):
        return f"cannot write to {existing}: choose another folder for the engine"
    needed = NEEDED_GB.get(options.accelerator, NEEDED_GB["cpu"]) if needed_gb is None else needed_gb
    free = shutil.disk_usage(str(existing)).free / 1e9
    if free < needed and not is_environment(options.target):
        return f"only {free:.1f} GB free in {existing}; the engine needs about {needed:g} GB"
    return None


def check_engine_answer(lines: Sequence[str]) -> Optional[str]:
    """Why the new engine's ``misr models --json`` answer is not usable, or None."""
    for line in reversed(lines):
        if line.strip().startswith("{"):
            try:
                models = json.loads(line).get("models") or []
            except (ValueError, AttributeError):
                break
            if any(isinstance(m, dict) and m.get("weights") for m in models):
                return None
            return "the engine lists no model with weights"
    return "the engine did not answer 'misr models --json'"


def run_setup(options: SetupOptions, on_line: Callable[[str], None] = lambda line: None,
              on_progress: Callable[[float, str], None] = lambda fraction, title: None,
              is_canceled: Callable[[], bool] = lambda: False) -> SetupResult:
    """Run the set-up to the end, the first failure or a cancel. Every output line goes to
    `on_line` and to the log file beside the environment."""
    reason = preflight(options)
    if reason:
        return SetupResult(False, reason=reason)
    options.target.parent.mkdir(parents=True, exist_ok=True)
    steps = plan_steps(options)
    total = sum(step.weight for step in steps)
    done = 0.0
    created = not is_environment(options.target)
    with open(options.log_path, "w", encoding="utf-8") as log:
        def emit(line: str) -> None:
            log.write(line + "\n")
            log.flush()
            on_line(line)

        for step in steps:
            emit(f"== {step.title}: {' '.join(step.argv)}")
            on_progress(done / total, step.title)
            returncode, lines, canceled = _run_step(step, emit, lambda fraction: on_progress(
                (done + fraction * step.weight) / total, step.title), is_canceled)
            if canceled or returncode != 0:
                if created and step is steps[0]:
                    shutil.rmtree(options.target, ignore_errors=True)
                text = "canceled" if canceled else failure_reason(step, returncode, lines)
                emit(f"== {text}")
                return SetupResult(False, reason=text, canceled=canceled,
                                   log_path=str(options.log_path), tail=lines[-20:])
            if step is steps[-1]:
                problem = check_engine_answer(lines)
                if problem:
                    emit(f"== {step.title}: {problem}")
                    return SetupResult(False, reason=f"{step.title}: {problem}",
                                       log_path=str(options.log_path), tail=lines[-20:])
            done += step.weight
        on_progress(1.0, "Done")
        emit(f"== The engine is ready: {options.target}")
    return SetupResult(True, engine=str(options.target), log_path=str(options.log_path))


def _run_step(step: SetupStep, emit: Callable[[str], None], on_fraction: Callable[[float], None],
              is_canceled: Callable[[], bool]) -> Tuple[Optional[int], List[str], bool]:
    """One step as a subprocess: (exit status, its output lines, whether it was canceled)."""
    process = EngineProcess(step.argv, env={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"})
    try:
        process.start()
    except OSError as exc:
        line = f"cannot start {step.argv[0]}: {exc.strerror or exc}"
        emit(line)
        return None, [line], False
    lines: List[str] = []
    canceled = False
    while True:
        if not canceled and is_canceled():
            canceled = True
            process.terminate(grace_s=5.0)
        try:
            event = process.events.get(timeout=0.1)
        except queue.Empty:
            if process.finished and process.events.empty():
                break
            continue
        line = str(event.get("message", ""))
        lines.append(line)
        emit(line)
        on_fraction(1.0 - 0.97 ** len(lines))  # pip does not say how far it is: creep towards 1
    return process.process.wait(), lines, canceled
