"""Hostile and careless input, round two (issue 20), through the real command line: no output
replaced behind the user's back, no memory blow-up from a raster's shape, huge jobs and full
disks refused or reported in one line, no hang on special files, a thousand frames, duplicate
frames, quiet libraries, and signals at any moment. Rasters are tiny unless the case is size.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from misr_engine.models.registry import model_spec
from misr_engine.resources import sample_dir
from tests.engine.cli.helpers import (FAST, MISR, Scene, assert_clean_error, assert_ok, default_signals, events, files_in,
                                      make_scene, read, run_main, super_resolve, warnings_of)
from tests.rasters import make_raster, sparse_raster, textured

SAMPLE = sample_dir()
WEIGHTS = model_spec("piunet").default_weights


def in_process(capfd, scene, output: Path, *extra: str) -> tuple[int, str, str]:
    """`misr super-resolve` on `scene` in this process (quick), JSON progress; (status, stdout, stderr)."""
    args = ["super-resolve", "--frames", *scene.frames]
    if scene.masks:
        args += ["--masks", *scene.masks]
    status = run_main(*args, "-o", output, "--progress", "json", *FAST, *extra)
    captured = capfd.readouterr()
    return status, captured.out, captured.err


def sample_run(output: Path, *extra: str) -> subprocess.Popen:
    """The real sample with 16-pixel tiles (many tiles: seconds of work), JSON progress."""
    frames = sorted(str(p) for p in SAMPLE.glob("frame_*.tif"))
    masks = sorted(str(p) for p in SAMPLE.glob("mask_*.tif"))
    return subprocess.Popen([*MISR, "super-resolve", "--frames", *frames, "--masks", *masks, "-o", str(output),
                             "--tile-size", "16", "--progress", "json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_progress(process: subprocess.Popen) -> None:
    for line in process.stdout:
        if json.loads(line)["event"] == "progress":
            return
    pytest.fail(f"no progress event: {process.stderr.read()}")


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


MEASURED = [sys.executable, "-c", "import sys; from misr_engine.cli import main; status = main(sys.argv[2:]); "
            "from misr_engine.inference.budget import peak_rss_bytes; "
            "open(sys.argv[1], 'w').write(str(peak_rss_bytes() // 1024)); sys.exit(status)"]


def run_measured(folder: Path, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    """`misr ARGS` in a fresh process; also its peak RSS in MB."""
    peak = folder / "peak_kb.txt"
    result = subprocess.run([*MEASURED, str(peak), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return result, int(peak.read_text()) / 1024


@pytest.fixture
def tiny_disk(tmp_path):
    """A 160 kB tmpfs (root only; skipped elsewhere): a disk that is or gets full."""
    folder = tmp_path / "tiny_disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# ---------------------------------------------------------------------------------------------
# 1. Outputs: committed without a race, identity by resolved file


def test_a_file_written_at_the_output_during_the_run_is_kept(tmp_path):
    """`misr ... -o sr.tif & sleep 3; echo precious > sr.tif; wait` used to replace it, exit 0."""
    out = tmp_path / "out"
    out.mkdir()
    process = sample_run(out / "sr.tif")
    wait_for_progress(process)
    (out / "sr.tif").write_text("precious")
    _, stderr = finish(process)
    assert_clean_error(process.returncode, "", stderr, "sr.tif", "appeared during the run; kept it")
    assert os.listdir(out) == ["sr.tif"] and (out / "sr.tif").read_text() == "precious"


@pytest.mark.slow
def test_two_concurrent_runs_to_one_output_cannot_both_succeed(tmp_path):
    scene = make_scene(tmp_path, height=32, width=32)
    out = tmp_path / "out"
    out.mkdir()
    processes = [subprocess.Popen([*MISR, "super-resolve", "--frames", *scene.frames, "-o", str(out / "sr.tif"), *FAST],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.returncode, stderr) for p in processes for _, stderr in [finish(p)]]
    assert sorted(code for code, _ in results) == [0, 2], results
    assert "appeared during the run" in next(stderr for code, stderr in results if code == 2)
    assert os.listdir(out) == ["sr.tif"] and read(out / "sr.tif")[0].shape == (96, 96)


def test_overwrite_does_not_replace_dev_null(tmp_path, capfd):
    status, out, err = in_process(capfd, make_scene(tmp_path), Path("/dev/null"), "--overwrite")
    assert_clean_error(status, out, err, "/dev/null", "is a character device; outputs replace regular files only")
    assert Path("/dev/null").is_char_device()


def test_the_uncertainty_through_a_link_to_the_folder_is_the_same_file(tmp_path, capfd):
    """`--output sr.tif --uncertainty d/sr.tif`, d a link to '.': used to write one file twice."""
    scene = make_scene(tmp_path)
    (tmp_path / "d").symlink_to(tmp_path, target_is_directory=True)
    status, out, err = in_process(capfd, scene, tmp_path / "sr.tif", "--uncertainty", str(tmp_path / "d" / "sr.tif"))
    assert_clean_error(status, out, err, "same file")
    assert not (tmp_path / "sr.tif").exists()


def test_an_output_hard_linked_to_a_frame_is_refused_even_with_overwrite(tmp_path, capfd):
    scene = make_scene(tmp_path)
    os.link(scene.frames[0], tmp_path / "sr.tif")
    before = files_in(tmp_path)
    status, out, err = in_process(capfd, scene, tmp_path / "sr.tif", "--overwrite")
    assert_clean_error(status, out, err, "would overwrite an input")
    assert files_in(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# 2. Memory: bounded by a stated budget, refused up front


def test_a_raster_too_wide_for_the_memory_budget_is_refused_up_front(tmp_path):
    """3,000,000 x 64 LR pixels: rows of tiles span the width; the run used to be killed (137)."""
    frame = sparse_raster(tmp_path / "wide.tif", 3_000_000, 64)
    result, peak_mb = run_measured(tmp_path, "super-resolve", "--frames", frame, "-o", tmp_path / "sr.tif")
    line = assert_clean_error(result.returncode, "", result.stderr, "3000000 pixels wide", "the budget is",
                              "--memory-budget or MISR_MEMORY_BUDGET")
    assert "GB of memory" in line and peak_mb < 1500
    assert sorted(os.listdir(tmp_path)) == ["peak_kb.txt", "wide.tif"]


def test_a_compressed_bomb_declaring_a_huge_raster_is_refused_up_front(tmp_path):
    """200,000 x 200,000 pixels in 7 MB: refused before a pixel is read (it used to run for minutes at 3 GB)."""
    frame = sparse_raster(tmp_path / "bomb.tif", 200_000, 200_000)
    started = time.perf_counter()
    result, peak_mb = run_measured(tmp_path, "super-resolve", "--frames", frame, "-o", tmp_path / "sr.tif")
    line = assert_clean_error(result.returncode, "", result.stderr)
    assert "not enough disk space" in line or "of memory" in line
    assert peak_mb < 1500 and time.perf_counter() - started < 120


def test_the_memory_budget_is_an_option_and_an_environment_variable(tmp_path, capfd, monkeypatch):
    scene = make_scene(tmp_path)
    status, out, err = in_process(capfd, scene, tmp_path / "sr.tif", "--memory-budget", "300M")
    assert_clean_error(status, out, err, "the budget is 300.0 MB (--memory-budget 300M)")
    monkeypatch.setenv("MISR_MEMORY_BUDGET", "a lot")
    status, out, err = in_process(capfd, scene, tmp_path / "sr.tif")
    assert_clean_error(status, out, err, "MISR_MEMORY_BUDGET a lot: not a size")
    assert not (tmp_path / "sr.tif").exists()


# ---------------------------------------------------------------------------------------------
# 3. Weights: what the fuzz test does not reach (test_fuzz.py: hostile configs and tensor tables)


def test_weights_whose_network_output_is_not_finite_are_a_clean_error(tmp_path, capfd):
    """Finite weights, absurdly large: the network's output overflows. Used to write NaNs."""
    import torch
    from safetensors.torch import load_file, save_file

    from misr_engine.models.weights import read_metadata
    tensors = load_file(str(WEIGHTS))
    tensors["to_mean.weight"] = torch.full_like(tensors["to_mean.weight"], 3e38)
    weights = tmp_path / "overflowing.safetensors"
    save_file(tensors, str(weights), metadata=read_metadata(WEIGHTS))
    out = tmp_path / "out"
    out.mkdir()
    status, stdout, err = in_process(capfd, make_scene(tmp_path), out / "sr.tif", "--weights", str(weights))
    line = err.strip().splitlines()
    assert status == 2 and len(line) == 1 and "Traceback" not in err
    assert "the network's output is not finite (NaN or Inf) on the tile at LR rows 0-16" in line[0]
    assert os.listdir(out) == []


@pytest.mark.parametrize("role", ["frame", "mask", "weights"])
def test_a_fifo_as_an_input_is_refused_without_hanging(tmp_path, role):
    scene = make_scene(tmp_path)
    fifo = tmp_path / f"fifo_{role}"
    os.mkfifo(fifo)
    frames, masks, extra = list(scene.frames), list(scene.masks), []
    if role == "frame":
        frames[1] = str(fifo)
    elif role == "mask":
        masks[1] = str(fifo)
    else:
        extra = ["--weights", str(fifo)]
    result = super_resolve(frames, tmp_path / "sr.tif", *extra, masks=masks)  # timeout: a hang fails
    assert_clean_error(result.returncode, result.stdout, result.stderr, fifo.name,
                       "is a FIFO (named pipe), not a " + ("weights file" if role == "weights" else "raster"))


def test_a_vrt_reading_a_fifo_or_a_device_is_refused_without_hanging(tmp_path, capfd):
    scene = make_scene(tmp_path)
    os.mkfifo(tmp_path / "pipe.tif")
    for source, kind in ((tmp_path / "pipe.tif", "FIFO"), (Path("/dev/zero"), "character device")):
        vrt = tmp_path / "trick.vrt"
        vrt.write_text(f'<VRTDataset rasterXSize="16" rasterYSize="16"><VRTRasterBand dataType="UInt16" band="1">'
                       f'<SimpleSource><SourceFilename>{source}</SourceFilename><SourceBand>1</SourceBand>'
                       f'</SimpleSource></VRTRasterBand></VRTDataset>')
        status, out, err = in_process(capfd, Scene([scene.frames[0], str(vrt)], [], tmp_path), tmp_path / "sr.tif")
        assert_clean_error(status, out, err, "trick.vrt: reads", kind)


# ---------------------------------------------------------------------------------------------
# 4. Up-front checks: disk space, names, file types, extensions


def test_outputs_that_cannot_fit_on_the_disk_are_refused_up_front(tmp_path, tiny_disk, capfd):
    scene = make_scene(tmp_path, height=64, width=64)  # two outputs of 192 x 192 float32: ~120 kB each
    status, out, err = in_process(capfd, scene, tiny_disk / "sr.tif", "--uncertainty", str(tiny_disk / "unc.tif"))
    assert_clean_error(status, out, err, "not enough disk space", "sr.tif and", "unc.tif (the x3 of", "frame_01.tif) need about")
    assert os.listdir(tiny_disk) == []


@pytest.mark.parametrize("which", ["output", "frame"])
def test_a_name_too_long_is_one_line(tmp_path, capfd, which):
    scene = make_scene(tmp_path)
    long_name = str(tmp_path / ("x" * 300 + ".tif"))
    if which == "frame":
        scene.frames[1] = long_name
    status, out, err = in_process(capfd, scene, long_name if which == "output" else tmp_path / "sr.tif")
    assert_clean_error(status, out, err, "file name too long")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_as_a_frame_is_refused(tmp_path, capfd, device):
    scene = make_scene(tmp_path)
    status, out, err = in_process(capfd, Scene([scene.frames[0], device], [], tmp_path), tmp_path / "sr.tif")
    assert_clean_error(status, out, err, device, "is a character device, not a raster")


def test_an_output_named_png_is_refused_not_written_as_a_geotiff(tmp_path, capfd):
    status, out, err = in_process(capfd, make_scene(tmp_path), tmp_path / "sr.png")
    assert_clean_error(status, out, err, "sr.png: .png is the extension of Portable Network Graphics files",
                       "give a .tif name")
    assert not (tmp_path / "sr.png").exists()


# ---------------------------------------------------------------------------------------------
# 5. and 6. Many frames, duplicate frames


def many_frames(folder: Path, count: int, clear: set[int]) -> tuple[list[str], list[str]]:
    """`count` different 8 x 8 frames; those in `clear` fully clear, the others partly cloudy."""
    frames, masks = [], []
    folder.mkdir(exist_ok=True)
    for index in range(count):
        mask = np.ones((8, 8), np.uint8)
        if index not in clear:
            mask[:1 + index % 6] = 0
        frames.append(str(make_raster(folder / f"f{index:04d}.tif", textured(8, 8, index))))
        masks.append(str(make_raster(folder / f"m{index:04d}.tif", mask, gdal.GDT_Byte)))
    return frames, masks


def _open_files_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    return apply


@pytest.mark.slow
def test_1100_frames_run_under_a_64_file_limit_using_the_15_clearest(tmp_path):
    """Used to fail with 'Too many open files': every file was held open."""
    clear = set(range(37, 1100, 71))  # 15 frames
    frames, masks = many_frames(tmp_path / "inputs", 1100, clear)
    out = tmp_path / "sr.tif"
    result = subprocess.run([*MISR, "super-resolve", "--frames", *frames, "--masks", *masks, "-o", str(out),
                             "--progress", "json", *FAST], capture_output=True, text=True, timeout=900,
                            preexec_fn=_open_files_limit(64))
    found = assert_ok(result)
    assert any("1085 frame(s) beyond the 15 clearest not used" in m for m in warnings_of(found))
    tags = gdal.Open(str(out)).GetMetadata()
    assert json.loads(tags["MISR_FRAME_FILES"]) == [os.path.basename(frames[i]) for i in sorted(clear)]


def test_more_frames_kept_than_open_files_allow_is_one_line(tmp_path):
    frames, masks = many_frames(tmp_path / "inputs", 40, set(range(40)))
    result = subprocess.run([*MISR, "super-resolve", "--frames", *frames, "--masks", *masks, "-o", str(tmp_path / "sr.tif"),
                             "--max-frames", "40", *FAST], capture_output=True, text=True, timeout=300,
                            preexec_fn=_open_files_limit(64))
    assert_clean_error(result.returncode, "", result.stderr, "need 80 files open at once and the limit is 64",
                       "fewer --max-frames")


def test_duplicate_frames_are_used_once_with_a_warning(tmp_path, capfd):
    scene = make_scene(tmp_path, count=2, masks=False)
    shutil.copy(scene.frames[0], tmp_path / "copy.tif")
    os.symlink(scene.frames[1], tmp_path / "link.tif")
    given = [scene.frames[0], scene.frames[0], scene.frames[1], str(tmp_path / "copy.tif"), scene.frames[0],
             str(tmp_path / "link.tif")]
    status, out, err = in_process(capfd, Scene(given, [], tmp_path), tmp_path / "sr.tif")
    assert status == 0, err
    messages = warnings_of(events(out))
    assert f"{scene.frames[0]}: given 3 times; used once" in messages
    assert f"{scene.frames[1]}: given 2 times; used once" in messages
    assert f"{tmp_path / 'copy.tif'}: same pixels and mask as {scene.frames[0]}; dropped" in messages
    assert gdal.Open(str(tmp_path / "sr.tif")).GetMetadata()["MISR_FRAMES"] == "2"


# ---------------------------------------------------------------------------------------------
# 7. Libraries' warnings


@pytest.mark.parametrize("kind", ["all-zero", "int64"])
def test_degenerate_frames_give_no_library_warning(tmp_path, capfd, kind):
    """scikit-image used to print 'Could not determine RMS error between images ...'."""
    masks = []
    for index in range(2):
        clear = np.ones((16, 16), np.uint8)
        clear[:4 * index] = 0
        masks.append(str(make_raster(tmp_path / f"m{index}.tif", clear, gdal.GDT_Byte)))
    data = [np.zeros((16, 16))] * 2 if kind == "all-zero" else [textured(16, 16, i) * 1e9 for i in range(2)]
    data_type = gdal.GDT_Float32 if kind == "all-zero" else gdal.GDT_Int64
    frames = [str(make_raster(tmp_path / f"f{i}.tif", d.astype(np.int64 if kind == "int64" else np.float32),
                              data_type)) for i, d in enumerate(data)]
    status, out, err = in_process(capfd, Scene(frames, masks, tmp_path), tmp_path / "sr.tif")
    assert status == 0, err
    assert warnings_of(events(out)) == [] and err.strip() == ""


# ---------------------------------------------------------------------------------------------
# 8. Disk full, signals, killed runs, devices, fine-tuning steps


def test_a_disk_that_fills_up_while_writing_is_one_line_and_leaves_nothing(tmp_path, tiny_disk, capfd, monkeypatch):
    """The up-front check passes (it is told the disk is large), the disk then fills: no
    'Exception ignored in: delete_Dataset ... Traceback', no partial file."""
    monkeypatch.setattr("misr_engine.pipeline.check_free_space", lambda *args: [])
    scene = make_scene(tmp_path, height=64, width=64)
    status, out, err = in_process(capfd, scene, tiny_disk / "sr.tif", "--uncertainty", str(tiny_disk / "unc.tif"))
    assert_clean_error(status, "", err, "cannot write: disk full in", "no output written")  # it ran, then failed
    assert events(out)[-1]["event"] == "error"
    assert "Exception ignored" not in err and os.listdir(tiny_disk) == []


def _catches(pid: int, number: int) -> bool:
    """Whether process `pid` has a handler for signal `number` (/proc/PID/status SigCgt)."""
    with open(f"/proc/{pid}/status") as handle:
        mask = next(int(line.split()[1], 16) for line in handle if line.startswith("SigCgt:"))
    return bool(mask >> (number - 1) & 1)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8])
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_a_signal_during_start_up_exits_130_without_a_traceback(tmp_path, number, delay):
    """From the moment the engine's code runs (its handlers installed, before numpy, GDAL and
    torch are imported): the QGIS plugin's Cancel sends SIGTERM about 1 s in."""
    scene = make_scene(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([*MISR, "super-resolve", "--frames", *scene.frames, "-o", str(out / "sr.tif"),
                                "--progress", "json", *FAST], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=default_signals)
    deadline = time.monotonic() + 30
    while not _catches(process.pid, signal.SIGTERM) and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    process.send_signal(number)
    stdout, stderr = finish(process, timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["misr: error: interrupted; no output written"]
    assert events(stdout)[-1] == {"event": "error", "message": "interrupted; no output written"}
    assert os.listdir(out) == []


@pytest.mark.slow
def test_with_sighup_ignored_by_the_parent_the_run_completes(tmp_path):
    """`nohup misr ...`: a closed terminal does not stop it."""
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([*MISR, "super-resolve", "--frames", *make_scene(tmp_path, count=2).frames,
                                "-o", str(out / "sr.tif"), "--progress", "json", *FAST],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_for_progress(process)
    process.send_signal(signal.SIGHUP)
    finish(process)
    assert process.returncode == 0 and os.listdir(out) == ["sr.tif"]


def test_partial_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    process = sample_run(out / "sr.tif", "--uncertainty", str(out / "unc.tif"))
    wait_for_progress(process)
    process.kill()  # SIGKILL (or the kernel's out-of-memory kill): no handler runs
    finish(process)
    left = sorted(os.listdir(out))
    assert len(left) == 2 and all(n.startswith((".sr.tif.misr-", ".unc.tif.misr-")) and
                                  n.endswith(f"-{process.pid}-{n.split('-')[-1]}") for n in left), left
    status, stdout, err = in_process(capfd, make_scene(tmp_path), out / "sr.tif", "--uncertainty", str(out / "unc.tif"))
    assert status == 0, err
    assert sorted(os.listdir(out)) == ["sr.tif", "unc.tif"]
    assert f"{out / 'sr.tif'}: removed 1 partial file(s) of an interrupted run" in warnings_of(events(stdout))


@pytest.mark.parametrize("device,problem", [("meta", "the engine runs on cpu, cuda or mps, not on meta devices"),
                                            ("xla", "the engine runs on cpu, cuda or mps, not on xla devices"),
                                            ("mps", "sees no Apple GPU (MPS)"), ("potato", "not a device name")])
def test_devices_the_engine_does_not_run_on_are_one_line(tmp_path, capfd, device, problem):
    status, out, err = in_process(capfd, make_scene(tmp_path), tmp_path / "sr.tif", "--device", device)
    assert_clean_error(status, out, err, f"--device {device}: ", problem)


def test_too_many_fine_tuning_steps_are_refused(tmp_path, capfd):
    status, out, err = in_process(capfd, make_scene(tmp_path), tmp_path / "sr.tif", "--ttf-steps", "100000")
    assert_clean_error(status, out, err, "--ttf-steps 100000: at most 1000")


def test_long_fine_tuning_is_announced_with_its_duration(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr("misr_engine.inference.tiled.TTF_WARN_SECONDS", 0.0)
    status, out, err = in_process(capfd, make_scene(tmp_path, count=3), tmp_path / "sr.tif", "--ttf-steps", "2")
    assert status == 0, err
    assert any(m.startswith("test-time fine-tuning: 2 steps will take about") and "s a step" in m
               for m in warnings_of(events(out)))
