"""The engine set-up from inside QGIS (core.engine_setup, the EngineSetupTask and the dialog's
panel): with stand-in Pythons for every failure people meet (no network, no venv module, a full
disk, a cancel), and once for real (slow): a virtual environment in tmp_path with the engine's
wheel and the pinned PyTorch from this machine's package index."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from qgis_misr.core import userfiles
from qgis_misr.core.engine_setup import (
    TORCH_CPU_INDEX,
    TORCH_REQUIREMENT,
    SetupOptions,
    default_torch_options,
    engine_source,
    find_python,
    plan_steps,
    preflight,
    run_setup,
)
from .engine_stub import fake_calls, fake_python

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX stand-in scripts")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def setup_options(tmp_path):
    """Options for a set-up with a stand-in Python and a (dummy) engine wheel."""
    wheel = tmp_path / "plugin" / "engine" / "misr_engine-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"PK")

    def make(**changes):
        values = dict(target=tmp_path / "engine", python=str(fake_python(tmp_path / "system")),
                      engine_source=str(wheel), torch_pip_options=default_torch_options("cpu", "linux"))
        values.update(changes)
        return SetupOptions(**values)
    return make


def test_a_set_up_installs_pinned_torch_then_the_engine_and_checks_it(setup_options):
    options = setup_options()
    lines, progress = [], []
    result = run_setup(options, lines.append, lambda fraction, title: progress.append((fraction, title)))
    assert result.ok, result.reason
    assert result.engine == str(options.target) and (options.target / "bin" / "misr").is_file()
    calls = fake_calls(Path(options.python))
    assert calls[0] == ["-m", "venv", "--system-site-packages", str(options.target)]
    torch = next(call for call in calls if TORCH_REQUIREMENT in call)
    assert torch[-1] == "torch==2.13.0" and "--extra-index-url" in torch and TORCH_CPU_INDEX in torch
    assert torch[torch.index("-c") + 1] == str(options.target / "constraints.txt")
    assert (options.target / "constraints.txt").read_text() == "numpy==1.24.2\n"
    engine = next(call for call in calls if call[-1] == options.engine_source)
    assert engine[:3] == ["-m", "pip", "install"] and "-c" in engine
    assert calls.index(torch) < calls.index(engine)
    assert progress[-1] == (1.0, "Done") and [f for f, _ in progress] == sorted(f for f, _ in progress)
    log = Path(result.log_path).read_text()
    assert "Successfully installed torch-2.13.0" in log and log.count("== ") >= 5
    # a second set-up in the same folder reuses the environment
    again = run_setup(options)
    assert again.ok and ["-m", "venv", "--system-site-packages", str(options.target)] not in \
        fake_calls(Path(options.python))[len(calls):]


def test_cuda_set_up_installs_the_gpu_build_of_onnx_runtime(setup_options):
    options = setup_options(accelerator="cuda", torch_pip_options=default_torch_options("cuda", "linux"))
    titles = [step.title for step in plan_steps(options)]
    assert titles == ["Creating the Python environment", "Keeping the system's numpy", "Installing PyTorch (CUDA)",
                      "Installing the engine", "Replacing ONNX Runtime by its GPU build",
                      "Installing ONNX Runtime (GPU)", "Checking the engine"]
    assert run_setup(options).ok
    calls = fake_calls(Path(options.python))
    assert ["-m", "pip", "uninstall", "-y", "onnxruntime"] in calls
    assert any(call[-1] == "onnxruntime-gpu" for call in calls)
    torch = next(call for call in calls if TORCH_REQUIREMENT in call)
    assert TORCH_CPU_INDEX not in torch  # CUDA builds are PyPI's own
    assert default_torch_options("cpu", "darwin") == ()


def test_no_network_is_said_in_one_line(setup_options, monkeypatch):
    monkeypatch.setenv("FAKE_PIP", "network")
    result = run_setup(setup_options())
    assert not result.ok and not result.canceled
    assert result.reason == ("Installing PyTorch (CPU): no network: pip could not reach the package index "
                             "(check the connection or proxy)")
    assert "Temporary failure in name resolution" in Path(result.log_path).read_text()


def test_a_missing_venv_module_is_said_and_leaves_no_half_environment(setup_options, monkeypatch):
    monkeypatch.setenv("FAKE_VENV", "missing")
    options = setup_options()
    result = run_setup(options)
    assert not result.ok
    assert result.reason.startswith("Creating the Python environment: Python's venv module is missing")
    assert "apt install python3-venv" in result.reason and not options.target.exists()


def test_a_full_disk_is_said_before_and_during_the_set_up(setup_options, monkeypatch):
    options = setup_options()
    reason = preflight(options, needed_gb=1e9)
    assert reason.startswith("only ") and reason.endswith("the engine needs about 1e+09 GB")
    monkeypatch.setenv("FAKE_PIP", "disk")
    result = run_setup(options)
    assert result.reason == "Installing PyTorch (CPU): the disk is full (No space left on device)"


def test_other_pip_failures_give_pips_own_error_line(setup_options, monkeypatch):
    monkeypatch.setenv("FAKE_PIP_ENGINE", "broken")
    result = run_setup(setup_options())
    assert result.reason == "Installing the engine: something unexpected happened"


def test_nothing_starts_without_python_or_engine(setup_options, tmp_path):
    assert run_setup(setup_options(python="")).reason.startswith("no Python 3.")
    result = run_setup(setup_options(engine_source=str(tmp_path / "none.whl")))
    assert result.reason.startswith("the plugin has no engine to install")
    assert not (tmp_path / "engine").exists()


def test_a_set_up_can_be_canceled(setup_options, monkeypatch):
    monkeypatch.setenv("FAKE_PIP", "hang")
    lines = []
    start = time.monotonic()
    result = run_setup(setup_options(), lines.append, is_canceled=lambda: "Collecting torch==2.13.0" in lines)
    assert result.canceled and not result.ok and result.reason == "canceled"
    assert time.monotonic() - start < 30


def test_the_python_qgis_runs_on_is_found_by_its_version(tmp_path):
    right = fake_python(tmp_path / "right")
    wrong = fake_python(tmp_path / "wrong", version="2.7")
    assert find_python([str(wrong), str(tmp_path / "missing"), str(right)]) == str(right)
    assert find_python([str(wrong)]) is None
    assert find_python() is not None  # this Python's own (the tests run on QGIS's Python)


def test_the_engine_comes_from_the_plugins_wheel_else_the_repository(tmp_path):
    plugin = tmp_path / "qgis_misr"
    (plugin / "engine").mkdir(parents=True)
    assert engine_source(plugin) is None
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "pyproject.toml").write_text("")
    assert engine_source(plugin) == str(tmp_path / "engine")
    wheel = plugin / "engine" / "misr_engine-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    assert engine_source(plugin) == str(wheel)
    assert engine_source(REPO / "qgis_misr") == str(REPO / "engine")  # this checkout


# -- in QGIS: the dialog's panel and its task ----------------------------------------------------------
def _wait(condition, timeout_s=60.0):
    from .plugin_support import wait_for
    return wait_for(condition, timeout_s)


def test_the_panel_sets_up_in_the_background_and_the_dialog_uses_the_engine(
        qgis_app, project, setup_options):
    from qgis_misr import settings
    from qgis_misr.controller import RunController
    from qgis_misr.gui.dialog import MisrDialog
    settings.set_configured_engine("")
    dialog = MisrDialog(RunController(), project)
    try:
        options = setup_options()
        task = dialog.setup_panel.start(options=options)
        assert not dialog.setup_panel.setup_button.isEnabled() and dialog.setup_panel.cancel_button.isEnabled()
        assert _wait(lambda: dialog.setup_panel.task is None), "the set-up did not end"
        assert task.result.ok, task.result.reason
        assert dialog.setup_panel.status_label.text() == f"The engine is ready in {options.target}."
        assert "Successfully installed torch-2.13.0" in dialog.setup_panel.log_view.toPlainText()
        # the plugin's engine now, in this profile and for every profile and qgis_process
        assert settings.configured_engine() == str(options.target)
        assert userfiles.read_engine_path() == str(options.target)
        assert dialog.engine_widget.filePath() == str(options.target)
        assert dialog.wait_for_engine(60) and dialog.caps is not None and dialog.caps.ok, dialog.engine_label.text()
        assert dialog.engine.argv == (str(options.target / "bin" / "misr"),)
    finally:
        settings.set_configured_engine("")
        userfiles.write_engine_path("")
        dialog.disconnect_project()
        dialog.deleteLater()


def test_the_panel_says_why_a_set_up_failed_and_can_be_retried(qgis_app, project, setup_options, monkeypatch):
    from qgis_misr import settings
    from qgis_misr.gui.engine_setup import EngineSetupPanel
    settings.set_configured_engine("")
    monkeypatch.setenv("FAKE_PIP", "network")
    panel = EngineSetupPanel()
    task = panel.start(options=setup_options())
    assert _wait(lambda: panel.task is None)
    assert task.result is not None and not task.result.ok
    assert panel.status_label.text() == ("Set-up failed: Installing PyTorch (CPU): no network: pip could not "
                                         "reach the package index (check the connection or proxy)")
    assert panel.setup_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert not panel.log_box.isCollapsed() and "Temporary failure" in panel.log_view.toPlainText()
    assert settings.configured_engine() == "" and userfiles.read_engine_path() == ""


def test_the_panel_never_blocks_and_a_cancel_is_not_a_failure(qgis_app, project, setup_options, monkeypatch):
    from qgis.core import QgsTask
    from qgis_misr.gui.engine_setup import EngineSetupPanel
    monkeypatch.setenv("FAKE_PIP", "hang")  # pip "downloads" for a minute
    panel = EngineSetupPanel()
    start = time.monotonic()
    task = panel.start(options=setup_options())
    assert time.monotonic() - start < 2.0  # back to the event loop at once
    assert _wait(lambda: "Collecting torch==2.13.0" in panel.log_view.toPlainText(), 30)
    panel.cancel()
    assert _wait(lambda: panel.task is None, 30)
    assert panel.status_label.text() == "Set-up canceled."
    assert task.status() == QgsTask.TaskStatus.Complete and task.description().endswith("(canceled)")


@pytest.mark.slow
def test_a_real_set_up_in_tmp_path_with_the_wheel_and_pinned_torch(tmp_path):
    """The real thing, offline-friendly: this machine's pip configuration serves torch 2.13.0
    (CPU); the engine wheel is built as scripts/build_plugin_zip.py builds it."""
    import importlib.util
    import subprocess
    spec = importlib.util.spec_from_file_location("build_plugin_zip", REPO / "scripts" / "build_plugin_zip.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    wheel = builder.build_engine_wheel(tmp_path / "wheel")
    options = SetupOptions(target=tmp_path / "engine", python=find_python() or "", engine_source=str(wheel))
    result = run_setup(options)
    assert result.ok, (result.reason, result.tail)
    misr = options.target / "bin" / "misr"
    answer = subprocess.run([str(misr), "devices", "--json"], capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert answer.returncode == 0 and '"torch": "2.13.0' in answer.stdout, answer.stderr
    versions = subprocess.run([str(options.target / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                              capture_output=True, text=True, timeout=120).stdout
    assert '"misr-engine"' in versions and '"onnxruntime"' in versions
