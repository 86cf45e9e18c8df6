"""The one run path (qgis_misr.core.run) that the dialog's task and the Processing algorithm share:
preparing a run, dispatching the engine's events by name, reading its results. Stand-in engines
only: the real one runs in test_plugin_gui.py and test_plugin_processing.py."""

from __future__ import annotations

import os
import re

import pytest

from qgis_misr.core import contract
from qgis_misr.core.engine import EngineCapabilities, EngineLocation, parse_models
from qgis_misr.core.params import FrameInput, RasterInfo, RunParameters
from qgis_misr.core.run import (
    ENGINE_NOT_FOUND,
    RunError,
    RunReporter,
    dispatch,
    execute,
    prepare_run,
)
from qgis_misr.core.validation import ONE_FRAME_NOTE, screening_notes
from .engine_stub import NEW_MODELS_ANSWER, fake_engine, writes_outputs


class Recorder(RunReporter):
    """Every reporter call as (method, arguments)."""

    def __init__(self):
        self.calls = []

    def start(self, summary):
        self.calls.append(("start", summary))

    def progress(self, fraction, message):
        self.calls.append(("progress", fraction, message))

    def warning(self, message):
        self.calls.append(("warning", message))

    def log(self, message):
        self.calls.append(("log", message))

    def done(self, summary):
        self.calls.append(("done", summary))

    def error(self, message):
        self.calls.append(("error", message))


def _frames(tmp_path):
    paths = []
    for name in ("a.tif", "b.tif"):
        (tmp_path / name).write_bytes(b"")
        paths.append(str(tmp_path / name))
    return [FrameInput(RasterInfo(os.path.basename(p), p, "EPSG:32618", (0.0, 0.0, 300.0, 600.0), 10, 20,
                                  (30.0, 30.0))) for p in paths]


def _engine(tmp_path, body: str) -> EngineLocation:
    return EngineLocation((str(fake_engine(tmp_path / "engine", run_body=body)),), "test")


def test_every_contract_event_reaches_the_reporter_method_of_its_name():
    recorder = Recorder()
    events = [{"event": contract.START, "frames": 9, "model": "piunet", "device": "cpu"},
              {"event": contract.PROGRESS, "fraction": 0.25, "message": "tile 4/16"},
              {"event": contract.PROGRESS, "fraction": 1.7},  # clamped
              {"event": contract.PROGRESS, "fraction": "half"},  # not a number: ignored
              {"event": contract.WARNING, "message": "frame b.tif is fully cloudy: dropped"},
              {"event": contract.LOG, "message": "loading weights"},
              {"event": contract.STDERR, "message": "a stderr line"},
              {"event": contract.DONE, "output": "/o/sr.tif", "device": "cuda:0", "seconds": 3.2},
              {"event": contract.ERROR, "message": "a.tif: not found"},
              {"event": "something-new", "message": "ignored"}]
    for event in events:
        dispatch(event, recorder)
    assert recorder.calls == [
        ("start", "Engine started: 9 frames, model piunet, device cpu"),
        ("progress", 0.25, "tile 4/16"),
        ("progress", 1.0, ""),
        ("warning", "frame b.tif is fully cloudy: dropped"),
        ("log", "loading weights"),
        ("log", "a stderr line"),
        ("done", "Done in 3.2 s on cuda:0: /o/sr.tif"),
        ("error", "a.tif: not found")]


def test_a_run_without_output_paths_gets_temporary_ones_in_a_new_folder(tmp_path):
    params = RunParameters(frames=_frames(tmp_path), run_name="MISR PIUnet a..b (2 frames) 14:05:07")
    prepared = prepare_run(params, EngineLocation(("misr",), "test"), temp_root=str(tmp_path))
    folder = prepared.plan.temporary_folder
    assert prepared.plan.temporary and os.path.isdir(folder) and os.path.dirname(folder) == str(tmp_path)
    assert prepared.plan.paths == [os.path.join(folder, "MISR_PIUnet_a_b_2_frames_14_05_07_sr.tif"),
                                   os.path.join(folder, "MISR_PIUnet_a_b_2_frames_14_05_07_uncertainty.tif")]
    argv = prepared.argv
    assert argv[argv.index("--output") + 1] == prepared.params.output == prepared.plan.sr
    assert argv[argv.index("--uncertainty") + 1] == prepared.plan.uncertainty


def test_given_outputs_are_used_as_they_are_and_no_folder_is_made(tmp_path):
    params = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "sr.tif"), write_uncertainty=False)
    prepared = prepare_run(params, EngineLocation(("misr",), "test"), temp_root=str(tmp_path / "none"))
    assert prepared.plan.paths == [str(tmp_path / "sr.tif")] and not prepared.plan.temporary
    assert "--uncertainty" not in prepared.argv and not (tmp_path / "none").exists()


def test_a_run_that_cannot_start_says_why_in_one_line_and_leaves_nothing(tmp_path):
    params = RunParameters(frames=_frames(tmp_path)[:1], tile_size=0)
    with pytest.raises(RunError, match="^MISR engine not found"):
        prepare_run(params, None)
    assert str(RunError(ENGINE_NOT_FOUND)).count("\n") == 0
    with pytest.raises(RunError, match=r"^Choose at least one frame .*\.$"):
        prepare_run(RunParameters(frames=[]), EngineLocation(("misr",), "test"))
    # fine-tuning on an engine whose --help lacks it: refused after the outputs were planned
    no_ttf = EngineCapabilities(options=frozenset({"--tile-size"}), models=parse_models(NEW_MODELS_ANSWER)[0])
    params = RunParameters(frames=_frames(tmp_path), ttf_enabled=True)
    root = tmp_path / "temp"
    root.mkdir()
    with pytest.raises(RunError, match="no --ttf-steps option"):
        prepare_run(params, EngineLocation(("misr",), "test"), no_ttf, temp_root=str(root))
    assert os.listdir(root) == []


def test_a_finished_run_reports_its_outputs_warnings_and_device(tmp_path):
    params = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "sr.tif"),
                           uncertainty=str(tmp_path / "unc.tif"), device="cuda")
    prepared = prepare_run(params, _engine(tmp_path, writes_outputs("cpu")))
    recorder = Recorder()
    outcome = execute(prepared, recorder)
    assert outcome.ok, outcome.error
    assert (outcome.sr, outcome.uncertainty) == (str(tmp_path / "sr.tif"), str(tmp_path / "unc.tif"))
    assert outcome.device == "cpu" and outcome.seconds == 0.5
    assert outcome.gpu_fallback  # a GPU was asked for, the engine ran on the CPU
    assert list(outcome.warnings) == ["frame b.tif is fully cloudy: dropped"]
    assert [call[0] for call in recorder.calls] == ["start", "warning", "done"]
    on_gpu = execute(prepare_run(params, _engine(tmp_path, writes_outputs("cuda:0"))), RunReporter())
    assert on_gpu.device == "cuda:0" and not on_gpu.gpu_fallback


def test_a_run_s_progress_says_the_time_elapsed_and_left(tmp_path):
    """What the dialog's status line and Processing's progress text show: the engine's message,
    the time since the run began and, once the tiles move, about how long is left."""
    body = """
        import time
        for fraction, message, pause in ((0.0, "registering the frames", 1.0), (0.25, "tile 1/4", 1.0),
                                         (0.5, "tile 2/4", 0.0)):
            print(json.dumps({"event": "progress", "fraction": fraction, "message": message}), flush=True)
            time.sleep(pause)
    """ + writes_outputs("cpu")
    params = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "sr.tif"))
    recorder = Recorder()
    outcome = execute(prepare_run(params, _engine(tmp_path, body)), recorder)
    assert outcome.ok, outcome.error
    said = [call[1:] for call in recorder.calls if call[0] == "progress"]
    assert [fraction for fraction, _ in said] == [0.0, 0.25, 0.5]
    assert re.fullmatch(r"registering the frames \(\d s elapsed\)", said[0][1]), said
    assert re.fullmatch(r"tile 1/4 \(\d s elapsed\)", said[1][1]), said  # no pace yet
    left = re.fullmatch(r"tile 2/4 \(\d s elapsed, about (\d) s left\)", said[2][1])
    assert left and 1 <= int(left.group(1)) <= 4, said  # a quarter took about 1 s; half is left


def test_a_failed_run_gives_the_engines_line_and_removes_its_temporary_folder(tmp_path):
    body = f"""
        open(args[args.index("--output") + 1], "w").write("half")
        print(json.dumps({{"event": "error", "message": "a.tif: no clear pixel in any frame"}}), flush=True)
        sys.exit({contract.EXIT_BAD_INPUT})
    """
    params = RunParameters(frames=_frames(tmp_path))
    prepared = prepare_run(params, _engine(tmp_path, body), temp_root=str(tmp_path))
    recorder = Recorder()
    outcome = execute(prepared, recorder)
    assert not outcome.ok and outcome.result.returncode == contract.EXIT_BAD_INPUT
    assert outcome.error == "a.tif: no clear pixel in any frame" and outcome.sr is None
    assert recorder.calls == [("error", "a.tif: no clear pixel in any frame")]
    assert not os.path.exists(prepared.plan.temporary_folder)


def test_a_canceled_run_is_reported_as_such(tmp_path):
    body = """
        import time
        print(json.dumps({"event": "start", "frames": 2}), flush=True)
        time.sleep(30)
    """
    params = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "sr.tif"), write_uncertainty=False)
    started = []

    class Started(RunReporter):
        def start(self, summary):
            started.append(summary)

    outcome = execute(prepare_run(params, _engine(tmp_path, body)), Started(), lambda: bool(started))
    assert outcome.canceled and not outcome.ok and outcome.error == "canceled"
    assert not (tmp_path / "sr.tif").exists()


def test_the_command_line_is_shown_quoted_where_needed(tmp_path):
    params = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "my sr.tif"), write_uncertainty=False)
    text = prepare_run(params, EngineLocation(("misr",), "test")).command_text
    assert f'--output "{tmp_path / "my sr.tif"}"' in text and text.startswith("misr super-resolve --frames ")
    assert "\n" not in text


def test_one_frame_runs_with_a_note(tmp_path):
    params = RunParameters(frames=_frames(tmp_path)[:1], output=str(tmp_path / "sr.tif"))
    prepared = prepare_run(params, EngineLocation(("misr",), "test"))
    assert prepared.notes == (ONE_FRAME_NOTE, *screening_notes(params))  # + too few frames to screen clouds
    assert prepared.argv[prepared.argv.index("--frames") + 1:prepared.argv.index("--output")] == [
        str(tmp_path / "a.tif")]


def test_the_success_text_says_which_results_are_temporary(tmp_path):
    named = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "sr.tif"),
                          uncertainty=str(tmp_path / "unc.tif"))
    plan = prepare_run(named, EngineLocation(("misr",), "test"), temp_root=str(tmp_path)).plan
    assert plan.saved_text() == f"Saved the SR to {tmp_path / 'sr.tif'} and the uncertainty to {tmp_path / 'unc.tif'}."
    assert "temporary" not in plan.saved_text()
    half = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "sr.tif"), run_name="r")
    plan = prepare_run(half, EngineLocation(("misr",), "test"), temp_root=str(tmp_path)).plan
    assert plan.saved_text() == (f"Saved the SR to {tmp_path / 'sr.tif'}. The uncertainty is a temporary "
                                 f"file: use Export to keep it.")
    temporary = prepare_run(RunParameters(frames=_frames(tmp_path), run_name="r"),
                            EngineLocation(("misr",), "test"), temp_root=str(tmp_path)).plan
    assert temporary.saved_text() == "The results are temporary files: use Export to keep them."
    no_uncertainty = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "sr.tif"), write_uncertainty=False)
    plan = prepare_run(no_uncertainty, EngineLocation(("misr",), "test")).plan
    assert plan.saved_text() == f"Saved the SR to {tmp_path / 'sr.tif'}."


def test_the_outcome_counts_the_frames_the_engine_used(tmp_path):
    body = """
        out = args[args.index("--output") + 1]
        print(json.dumps({"event": "start", "frames": 1, "model": "piunet", "device": "cpu"}), flush=True)
        open(out, "w").write("x")
        print(json.dumps({"event": "done", "output": out, "device": "cpu", "seconds": 0.1}), flush=True)
    """
    params = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "sr.tif"), write_uncertainty=False)
    outcome = execute(prepare_run(params, _engine(tmp_path, body)), RunReporter())
    assert outcome.ok and outcome.frames_used == 1


def test_the_outcome_counts_the_frames_left_after_the_engine_left_a_noisy_one_out(tmp_path):
    """The engine reads both frames (start) and leaves one far noisier than the other out (done)."""
    body = """
        out = args[args.index("--output") + 1]
        print(json.dumps({"event": "start", "frames": 2, "model": "piunet", "device": "cpu"}), flush=True)
        open(out, "w").write("x")
        print(json.dumps({"event": "done", "output": out, "device": "cpu", "seconds": 0.1, "frames": 1}), flush=True)
    """
    params = RunParameters(frames=_frames(tmp_path), output=str(tmp_path / "sr.tif"), write_uncertainty=False)
    outcome = execute(prepare_run(params, _engine(tmp_path, body)), RunReporter())
    assert outcome.ok and outcome.frames_used == 1
