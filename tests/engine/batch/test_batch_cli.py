"""`misr batch` end to end (issue 19), through the real command line, on real data (crops of the
sample): on a local cluster of 2 workers and on a cluster given by address; identical to
`misr super-resolve`, idempotent, resumable after SIGTERM, one bad scene failing alone, invalid
rows refused before anything runs."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from osgeo import gdal

from tests.engine.cli.helpers import MISR
from .helpers import ONE_THREAD, TILE, TWO_WORKERS, batch, events, file_states, make_scenes, report, write_csv


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, list[str]]:
    """Three scenes, their manifest, and each one super-resolved by `misr super-resolve`."""
    folder = tmp_path_factory.mktemp("archive")
    ids = make_scenes(folder, 3)
    write_csv(folder / "scenes.csv", ids)
    (folder / "reference").mkdir()
    for scene in ids:
        frames = sorted(str(p) for p in (folder / scene).glob("frame_*.tif"))
        masks = sorted(str(p) for p in (folder / scene).glob("mask_*.tif"))
        subprocess.run([*MISR, "super-resolve", "--frames", *frames, "--masks", *masks, "--tile-size", "16",
                        "-o", str(folder / "reference" / f"{scene}_sr.tif"),
                        "--uncertainty", str(folder / "reference" / f"{scene}_unc.tif"), "--progress", "none"],
                       check=True, capture_output=True, env=ONE_THREAD, timeout=300)
    return folder, ids


def assert_same_as_super_resolve(archive: tuple[Path, list[str]], outputs: Path) -> None:
    folder, ids = archive
    for scene in ids:
        for suffix in ("_sr.tif", "_unc.tif"):
            assert (outputs / f"{scene}{suffix}").read_bytes() == \
                (folder / "reference" / f"{scene}{suffix}").read_bytes(), f"{scene}{suffix}"


def ok(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    found = events(result.stdout)
    assert found[-1]["event"] == "done", found[-1]
    return found


@pytest.mark.slow
def test_a_manifest_gives_the_files_of_super_resolve_and_a_rerun_rewrites_nothing(archive, tmp_path):
    manifest = archive[0] / "scenes.csv"
    found = ok(batch(manifest, "-o", str(tmp_path)))
    start = found[0]
    assert start["event"] == "start" and start["workers"] == 2 and start["to_run"] == 3
    assert start["dashboard"].startswith("http")
    assert [e["fraction"] for e in found if e["event"] == "progress"] == [0.3333, 0.6667, 1.0]
    assert found[-1]["counts"]["done"] == 3
    assert_same_as_super_resolve(archive, tmp_path)
    scenes = report(tmp_path)
    assert {s["status"] for s in scenes.values()} == {"done"} and set(scenes) == set(archive[1])
    for scene in scenes.values():
        assert scene["output_sha256"] == hashlib.sha256(Path(scene["output"]).read_bytes()).hexdigest()
        assert scene["device"] == "cpu" and scene["seconds"] > 0 and scene["attempts"] == 1
        assert scene["frames"] == int(gdal.Open(scene["output"]).GetMetadataItem("MISR_FRAMES"))
        assert scene["frames_left_out"] == ""
    workers = {s["worker"] for s in scenes.values()}
    assert sum(s["loaded_model"] for s in scenes.values()) == len(workers)  # once per worker, not per scene
    assert (tmp_path / "scenes_report.csv").read_text().startswith("scene,status,seconds,device,worker")

    before = file_states(tmp_path)
    found = ok(batch(manifest, "-o", str(tmp_path), "--json"))
    assert found[0]["workers"] == 0 and found[-1]["counts"]["skipped"] == 3  # no cluster even started
    [document] = [line for line in found if "scenes" in line and "counts" in line]  # --json: the report
    assert document["counts"]["skipped"] == 3 and len(document["scenes"]) == 3
    assert file_states(tmp_path) == before
    assert {s["status"] for s in report(tmp_path).values()} == {"skipped"}
    assert [s["output_sha256"] for s in report(tmp_path).values()] == [s["output_sha256"] for s in scenes.values()]

    changed = batch(manifest, "-o", str(tmp_path), "--set", "tile_size=32")  # other options: not this run's
    assert changed.returncode == 2
    assert "scenes.csv:2: scene scene0: " in changed.stderr
    assert "already exists from another run (tile_size: 16 there, 32 here); use --overwrite" in changed.stderr
    assert file_states(tmp_path) == before


@pytest.fixture()
def scheduler(tmp_path):
    """A Dask scheduler and 2 one-thread workers started as their own processes: a cluster given by
    address, as a SLURM or Kubernetes one would be (its scheduler file)."""
    address_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    processes = [subprocess.Popen([*dask, "--scheduler-file", str(address_file), "--port", "0",
                                   "--dashboard-address", ":0"], env=ONE_THREAD,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(120):
            if address_file.exists() and address_file.stat().st_size:
                break
            time.sleep(0.5)
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(address_file),
             "--nworkers", "2", "--nthreads", "1", "--no-dashboard"], env=ONE_THREAD,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield json.loads(address_file.read_text())["address"]
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            process.wait(timeout=60)


@pytest.mark.slow
def test_a_cluster_given_by_address_runs_the_manifest_and_keeps_the_model_loaded(archive, scheduler, tmp_path):
    manifest = archive[0] / "scenes.csv"
    found = ok(batch(manifest, "-o", str(tmp_path), "--scheduler", scheduler))
    assert found[0]["workers"] == 2
    assert_same_as_super_resolve(archive, tmp_path)
    assert sum(s["loaded_model"] for s in report(tmp_path).values()) == len({s["worker"] for s in report(tmp_path).values()})
    before = file_states(tmp_path)
    ok(batch(manifest, "-o", str(tmp_path), "--scheduler", scheduler, "--overwrite"))  # redoes everything
    again = report(tmp_path)
    assert {s["status"] for s in again.values()} == {"done"}
    assert not any(s["loaded_model"] for s in again.values())  # the workers still hold the network
    after = file_states(tmp_path)
    assert all(after[name][0] != before[name][0] for name in before)  # every file replaced
    assert_same_as_super_resolve(archive, tmp_path)


@pytest.mark.slow
def test_a_batch_stopped_by_sigterm_does_only_the_rest_when_run_again(tmp_path):
    ids = make_scenes(tmp_path, 6)
    manifest = write_csv(tmp_path / "scenes.csv", ids, uncertainty=False)
    command = [*MISR, "batch", str(manifest), "--progress", "json", *TILE, *TWO_WORKERS]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    for line in process.stdout:  # stop it once the first scene is done
        if json.loads(line)["event"] == "progress":
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "misr: error: interrupted; the scenes finished so far are kept" in stderr
    stopped = report(tmp_path)
    assert "done" in {s["status"] for s in stopped.values()}
    assert not list(tmp_path.glob(".*partial*")), list(tmp_path.iterdir())
    kept = file_states(tmp_path)  # whatever was committed before or while stopping
    assert 1 <= len(kept) < 6, kept

    found = ok(batch(manifest))
    resumed = report(tmp_path)
    assert {s for s, v in resumed.items() if v["status"] == "skipped"} == {f.removesuffix("_sr.tif") for f in kept}
    assert {s for s, v in resumed.items() if v["status"] == "done"} == set(ids) - set(
        f.removesuffix("_sr.tif") for f in kept)
    assert found[0]["to_run"] == 6 - len(kept)
    after = file_states(tmp_path)
    assert len(after) == 6 and all(after[name] == state for name, state in kept.items())


@pytest.mark.slow
def test_a_corrupt_scene_fails_alone_and_invalid_rows_can_be_skipped(tmp_path):
    ids = make_scenes(tmp_path, 3)
    frame = tmp_path / "scene1" / "frame_02.tif"
    data = frame.read_bytes()
    frame.write_bytes(data[:len(data) // 2])  # the header opens, the pixels do not
    manifest = write_csv(tmp_path / "scenes.csv", ids)
    with open(manifest, "a") as handle:
        handle.write("broken,scene9/frame_*.tif,,\n")
    result = batch(manifest, "--skip-invalid")
    assert result.returncode == 2
    found = events(result.stdout)
    assert found[0]["event"] == "warning" and "scenes.csv:5: scene broken: frames: 'scene9/frame_*.tif' " \
                                                "matches no file" in found[0]["message"]
    assert found[-1]["event"] == "error"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"misr: error: {manifest}: 4 scenes: 2 done, 1 failed, 1 invalid") and "Traceback" not in result.stderr
    assert f"first failure: scene scene1: {frame}: corrupt or unreadable pixel data" in last
    scenes = report(tmp_path)
    assert {k: v["status"] for k, v in scenes.items()} == {"scene0": "done", "scene1": "failed", "scene2": "done",
                                                          "broken": "invalid"}
    assert scenes["scene1"]["attempts"] == 1  # bad input is not retried
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == ["scene0_sr.tif", "scene0_unc.tif",
                                                               "scene2_sr.tif", "scene2_unc.tif"]


def test_invalid_rows_are_all_refused_before_anything_runs(tmp_path):
    ids = make_scenes(tmp_path, 2)
    manifest = tmp_path / "scenes.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"id": "good", "frames": "scene0/frame_*.tif", "masks": "scene0/mask_*.tif"}),
        json.dumps({"id": "gone", "frames": ["scene1/frame_01.tif", "scene1/nope.tif"]}),
        json.dumps({"id": "small", "frames": "scene1/frame_*.tif", "tile_size": 8}),
        json.dumps({"id": "odd", "frames": "scene1/frame_*.tif", "tile_size": "big"}),
        json.dumps({"id": "good", "frames": "scene1/frame_*.tif"}),
        "{not json",
    ]) + "\n")
    result = subprocess.run([*MISR, "batch", str(manifest), "--progress", "json", *TWO_WORKERS],
                            capture_output=True, text=True, timeout=120, env=ONE_THREAD)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"misr: error: {manifest}:2: scene gone: {tmp_path}/scene1/nope.tif: file not found",
        f"misr: error: {manifest}:3: scene small: --tile-size 8: must be at least 16 LR pixels",
        f"misr: error: {manifest}:4: scene odd: tile_size: 'big' is not an integer",
        f"misr: error: {manifest}:5: scene good: id: also used at line 1",
        f"misr: error: {manifest}:6: not JSON (Expecting property name enclosed in double quotes at column 2)",
        f"misr: error: {manifest}: 5 invalid row(s); nothing was run (fix them, or pass --skip-invalid to run "
        "the others)"]
    assert [e["event"] for e in events(result.stdout)] == ["error"] * 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ids + ["scenes.jsonl"]
