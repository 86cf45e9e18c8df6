"""Finding the `misr` engine and asking it what it can do (models, devices, options).

The engine is a separate Python environment with torch; the plugin only ever runs its command
line. Where it is found, in order: the path configured in the plugin's settings (this QGIS
profile), the ``MISR_ENGINE`` environment variable, the user's engine file (every profile and
``qgis_process``: see core.userfiles), the ``.venv`` of the repository the plugin folder sits
in, then ``misr`` on the PATH. A configured path may be the environment's folder, its Python, or the
``misr`` executable itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from . import userfiles

ENV_VAR = "MISR_ENGINE"
IS_WINDOWS = sys.platform.startswith("win")
_EXE = ".exe" if IS_WINDOWS else ""
PROBE_TIMEOUT_S = 180.0
ENGINE_NOT_FOUND = ("MISR engine not found: set it up or choose its Python environment in the "
                    "dialog's Engine section (every QGIS profile and qgis_process then find it), "
                    f"pass the Processing parameter ENGINE, or set the {ENV_VAR} environment variable")
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


@dataclass(frozen=True)
class EngineLocation:
    """How to start the engine: ``argv`` is the command prefix (``[.../bin/misr]`` or
    ``[.../bin/python, -m, misr_engine.cli]``); ``source`` says where it was found."""

    argv: Tuple[str, ...]
    source: str

    @property
    def label(self) -> str:
        return f"{' '.join(self.argv)} ({self.source})"


def engine_from_path(value: str) -> Optional[Tuple[str, ...]]:
    """The command prefix for a configured path (environment folder, its Python, or `misr`)."""
    if not value:
        return None
    path = Path(os.path.expanduser(value.strip().strip('"')))
    if path.is_dir():
        for folder in (path / ("Scripts" if IS_WINDOWS else "bin"), path):
            script = folder / f"misr{_EXE}"
            if _is_executable(script):
                return (str(script),)
            python = folder / f"python{_EXE}"
            if _is_executable(python):
                return (str(python), "-m", "misr_engine.cli")
        return None
    if not _is_executable(path):
        return None
    if path.name.lower().startswith("python"):
        sibling = path.parent / f"misr{_EXE}"
        if _is_executable(sibling):
            return (str(sibling),)
        return (str(path), "-m", "misr_engine.cli")
    return (str(path),)


def repository_venv(plugin_dir: Path) -> Path:
    """The ``.venv`` next to the plugin folder (a repository checkout, or a symlinked plugin)."""
    return plugin_dir.resolve().parent / ".venv"


def locate_engine(configured: str = "", environ: Optional[Mapping[str, str]] = None,
                  plugin_dir: Optional[Path] = None) -> Optional[EngineLocation]:
    """The engine to run, or None when none is found anywhere."""
    environ = os.environ if environ is None else environ
    plugin_dir = plugin_dir or Path(__file__).resolve().parent.parent
    candidates = [
        (configured, "plugin settings"),
        (environ.get(ENV_VAR, ""), f"{ENV_VAR} environment variable"),
        (userfiles.read_engine_path(environ), str(userfiles.config_file(environ))),
        (str(repository_venv(plugin_dir)), "the repository's .venv"),
    ]
    for value, source in candidates:
        argv = engine_from_path(value) if value else None
        if argv:
            return EngineLocation(argv, source)
    found = shutil.which("misr", path=environ.get("PATH"))
    if found:
        return EngineLocation((found,), "PATH")
    return None


def subprocess_environment(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment for the engine: QGIS's own Python settings removed (they would make the
    engine's Python load QGIS's libraries), unbuffered UTF-8 output."""
    env = dict(os.environ)
    for key in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__"):
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra or {})
    return env


def popen_flags() -> dict:
    """Keyword arguments for subprocess on this OS: its own process group (so that a terminal's
    Ctrl-C does not reach it and we can stop its children too), no console window on Windows."""
    if IS_WINDOWS:
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


@dataclass(frozen=True)
class WeightsChoice:
    """One shipped weights file of a model (``weights_options`` of ``misr models --json``):
    e.g. ``supervised`` (the default) or ``self-supervised``."""

    name: str
    label: str
    path: str
    card: Optional[str] = None


@dataclass(frozen=True)
class ModelInfo:
    """One model of ``misr models --json``. ``capabilities`` is None when the engine does not
    say (engines before the capabilities field): nothing is then refused on its account.
    ``weights_options``: its shipped weights files, the default first (empty for engines
    that do not list them)."""

    name: str
    label: str
    weights: Optional[str] = None
    default: bool = False
    capabilities: Optional[FrozenSet[str]] = None
    card: Optional[str] = None
    weights_options: Tuple[WeightsChoice, ...] = ()

    def weights_choice(self, text: str) -> Optional[WeightsChoice]:
        """The shipped weights named `text` (name or label, any case), or None."""
        wanted = text.strip().lower()
        return next((c for c in self.weights_options if wanted in (c.name.lower(), c.label.lower())), None)

    def can(self, capability: str) -> bool:
        """Whether the model has `capability` (``fine-tunable``, ``uncertainty``...); True when
        the engine does not list capabilities."""
        return self.capabilities is None or capability in self.capabilities


@dataclass(frozen=True)
class EngineLimits:
    """The engine's fixed numbers (``limits`` of ``misr models --json``); None = not reported."""

    scale: Optional[int] = None
    min_tile_size: Optional[int] = None
    default_tile_size: Optional[int] = None
    max_frames: Optional[int] = None
    screening_pool: Optional[int] = None
    """Without masks, how many times ``max_frames`` frames the engine screens to pick the clearest."""
    min_ttf_frames: Optional[int] = None
    default_ttf_steps: Optional[int] = None
    sensor_mtf_range: Optional[Tuple[float, float]] = None
    """The sensor MTFs at Nyquist ``--sensor-mtf`` accepts (low, high)."""
    engine_mtf: Optional[float] = None
    """The MTF at Nyquist the engine assumes when none is stated."""
    other_footprints: Optional[bool] = None
    """Whether the engine reads a frame of another footprint on the first frame's pixel grid (whole
    pixels off it) as it is, without --align."""


def parse_models(answer: Mapping) -> Tuple[List[ModelInfo], EngineLimits]:
    """The runnable models (those with weights) and the limits in a ``misr models --json`` answer.

    Tolerant of older engines: without ``label`` the name is title-cased, without
    ``capabilities`` they are unknown, without ``limits`` every limit is None.
    """
    models = []
    for item in answer.get("models") or []:
        if not isinstance(item, Mapping) or not item.get("name") or not item.get("weights"):
            continue
        name = str(item["name"])
        capabilities = item.get("capabilities")
        models.append(ModelInfo(
            name=name, label=str(item.get("label") or name.title()), weights=str(item["weights"]),
            default=bool(item.get("default", False)),
            capabilities=frozenset(map(str, capabilities)) if isinstance(capabilities, list) else None,
            card=item.get("card") or None, weights_options=_weights_options(item.get("weights_options"))))
    limits = answer.get("limits") if isinstance(answer.get("limits"), Mapping) else {}
    values = {key: _LIMIT_READERS.get(key, _positive_int)(limits.get(key))
              for key in EngineLimits.__dataclass_fields__}
    return models, EngineLimits(**values)


def _weights_options(items: Any) -> Tuple[WeightsChoice, ...]:
    """The well-formed entries of a model's ``weights_options`` (none for older engines)."""
    choices = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and item.get("name") and item.get("weights"):
            choices.append(WeightsChoice(str(item["name"]), str(item.get("label") or item["name"]),
                                         str(item["weights"]), item.get("card") or None))
    return tuple(choices)


def _fraction(value: Any) -> Optional[float]:
    """`value` as a number in (0, 1), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0.0 < number < 1.0 else None


def _float_range(value: Any) -> Optional[Tuple[float, float]]:
    """A [low, high] pair of fractions with low < high, else None."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    low, high = map(_fraction, value)
    return (low, high) if low is not None and high is not None and low < high else None


def _positive_int(value: Any) -> Optional[int]:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _flag(value: Any) -> Optional[bool]:
    return value if isinstance(value, bool) else None


_LIMIT_READERS = {"sensor_mtf_range": _float_range, "engine_mtf": _fraction, "other_footprints": _flag}
"""The limits that are not positive integers, and how each is read (None when malformed)."""


class UnknownModel(ValueError):
    """A model name the engine does not offer (the message lists those it does)."""


@dataclass
class EngineCapabilities:
    """What ``misr`` reported about itself. ``error`` is set when it could not be asked."""

    location: Optional[EngineLocation] = None
    error: str = ""
    options: frozenset = frozenset()
    models: List[ModelInfo] = field(default_factory=list)
    limits: EngineLimits = EngineLimits()
    devices: List[dict] = field(default_factory=list)
    torch: str = ""
    cuda: bool = False
    version: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def supports(self, option: str) -> bool:
        """Whether ``misr super-resolve --help`` lists `option` (e.g. ``--ttf-steps``)."""
        return option in self.options

    def model(self, text: str = "") -> ModelInfo:
        """The model named `text` (its name or label, any case; '' = the engine's default).
        Raises UnknownModel, listing the models the engine offers."""
        wanted = text.strip().lower()
        for info in self.models:
            if (info.default and not wanted) or wanted in (info.name.lower(), info.label.lower()):
                return info
        if not wanted and self.models:
            return self.models[0]
        if not self.models:
            raise UnknownModel("this engine offers no model with weights (misr models --json)")
        offered = ", ".join(f"{m.name} ({m.label})" for m in self.models)
        raise UnknownModel(f"this engine has no model '{text.strip()}'; it offers: {offered}")

    @property
    def gpus(self) -> List[dict]:
        return [d for d in self.devices if str(d.get("id", "")).startswith("cuda")]


def _run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, timeout=timeout, env=subprocess_environment(),
                          universal_newlines=True, encoding="utf-8", errors="replace", **popen_flags())


def _last_json_object(text: str) -> Optional[dict]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _failure(argv: Sequence[str], result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    tail = lines[-1].strip() if lines else f"exit status {result.returncode}"
    return f"'{' '.join(argv[-2:])}' failed: {tail}"


def probe_engine(location: Optional[EngineLocation], timeout: float = PROBE_TIMEOUT_S) -> EngineCapabilities:
    """Ask the engine for its options, models and devices (each a subprocess; takes seconds,
    since the engine imports torch: call it off the GUI thread)."""
    caps = EngineCapabilities(location=location)
    if location is None:
        caps.error = ENGINE_NOT_FOUND
        return caps
    base = list(location.argv)
    queries = {"help": ["super-resolve", "--help"], "version": ["--version"],
               "models": ["models", "--json"], "devices": ["devices", "--json"]}
    try:
        # Each answer costs a Python start-up with torch: ask all at once.
        with ThreadPoolExecutor(max_workers=len(queries)) as pool:
            futures = {key: pool.submit(_run, base + args, timeout) for key, args in queries.items()}
            answers = {key: future.result() for key, future in futures.items()}
    except FileNotFoundError as exc:
        caps.error = f"cannot start the engine {base[0]}: {exc.strerror or exc}"
        return caps
    except subprocess.TimeoutExpired as exc:
        caps.error = f"the engine did not answer within {exc.timeout:.0f} s"
        return caps
    except OSError as exc:
        caps.error = f"cannot start the engine {base[0]}: {exc}"
        return caps
    help_ = answers["help"]
    if help_.returncode != 0:
        caps.error = _failure(base + queries["help"], help_)
        return caps
    caps.options = frozenset(_OPTION.findall(help_.stdout))
    caps.version = (answers["version"].stdout.strip() or answers["version"].stderr.strip()
                    if answers["version"].returncode == 0 else "")
    models = answers["models"]
    parsed = _last_json_object(models.stdout) if models.returncode == 0 else None
    if parsed is None:
        caps.error = _failure(base + queries["models"], models)
        return caps
    caps.models, caps.limits = parse_models(parsed)
    devices = answers["devices"]
    parsed = _last_json_object(devices.stdout) if devices.returncode == 0 else None
    if parsed is None:
        caps.error = _failure(base + queries["devices"], devices)
        return caps
    caps.devices = [d for d in parsed.get("devices", []) if isinstance(d, dict)]
    caps.torch = str(parsed.get("torch", ""))
    caps.cuda = bool(parsed.get("cuda", False))
    return caps


_cache: Dict[Tuple, EngineCapabilities] = {}
_cache_lock = threading.Lock()


def _cache_key(location: Optional[EngineLocation]) -> Tuple:
    if location is None:
        return (None,)
    try:
        stamp = os.stat(location.argv[0]).st_mtime
    except OSError:
        stamp = None
    return location.argv + (stamp,)


def cached_capabilities(location: Optional[EngineLocation]) -> Optional[EngineCapabilities]:
    """The last successful probe of this engine in this session, or None."""
    with _cache_lock:
        return _cache.get(_cache_key(location))


def capabilities(location: Optional[EngineLocation], refresh: bool = False) -> EngineCapabilities:
    """Probe the engine once per session (failures are not cached, so a fix is seen)."""
    if not refresh:
        cached = cached_capabilities(location)
        if cached is not None:
            return cached
    caps = probe_engine(location)
    if caps.ok:
        with _cache_lock:
            _cache[_cache_key(location)] = caps
    return caps


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(str(path), os.X_OK)
