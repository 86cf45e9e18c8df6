"""Outputs are never replaced behind the user's back (issue 20): the commit links the temporary
into place, so a file that appeared meanwhile is kept; --overwrite replaces regular files only;
outputs are compared with inputs and each other by resolved file; partial files of killed runs
are recognisable and removed by the next run on the same output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from misr_engine.errors import MisrError
from misr_engine.rasters import outputs
from misr_engine.rasters.outputs import atomic_outputs, check_outputs, remove_stale_work_files
from misr_engine.rasters.writer import check_geotiff_name


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


def test_an_output_that_appears_during_the_run_is_kept(tmp_path):
    target = tmp_path / "sr.tif"
    with pytest.raises(MisrError, match="appeared during the run; kept it"):
        with atomic_outputs([str(target)]) as (temporary,):
            _write(temporary, "new result")
            target.write_text("precious")  # e.g. `echo precious > sr.tif` while the run works
    assert target.read_text() == "precious"
    assert os.listdir(tmp_path) == ["sr.tif"]  # no partial file left


def test_of_two_runs_to_one_output_the_second_to_finish_fails_and_the_first_result_stays(tmp_path):
    target = str(tmp_path / "sr.tif")
    with pytest.raises(MisrError, match="appeared during the run"):
        with atomic_outputs([target]) as (slow,):
            _write(slow, "slow run")
            with atomic_outputs([target]) as (fast,):
                _write(fast, "fast run")
    assert Path(target).read_text() == "fast run"
    assert os.listdir(tmp_path) == ["sr.tif"]


def test_when_the_second_output_appeared_the_first_is_taken_back(tmp_path):
    sr, unc = tmp_path / "sr.tif", tmp_path / "unc.tif"
    with pytest.raises(MisrError, match="unc.tif: appeared during the run"):
        with atomic_outputs([str(sr), str(unc)]) as temporaries:
            for temporary in temporaries:
                _write(temporary, "new")
            unc.write_text("precious")
    assert not sr.exists() and unc.read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["unc.tif"]


def test_overwrite_replaces_a_file_that_appeared_during_the_run(tmp_path):
    target = tmp_path / "sr.tif"
    with atomic_outputs([str(target)], overwrite=True) as (temporary,):
        _write(temporary, "new result")
        target.write_text("old")
    assert target.read_text() == "new result" and os.listdir(tmp_path) == ["sr.tif"]


@pytest.mark.parametrize("special", ["fifo", "dev-null"])
def test_overwrite_never_replaces_a_device_or_a_fifo(tmp_path, special):
    if special == "fifo":
        path = tmp_path / "sr.tif"
        os.mkfifo(path)
        expected = "FIFO"
    else:
        path = Path("/dev/null")
        expected = "character device"
    with pytest.raises(MisrError, match=f"is a {expected}.*regular files only"):
        check_outputs([str(path)], [], overwrite=True)
    assert not path.is_file() and (path.is_fifo() or path.is_char_device())


def test_a_fifo_put_at_the_output_during_the_run_is_not_replaced_either(tmp_path):
    target = tmp_path / "sr.tif"
    with pytest.raises(MisrError, match="FIFO"):
        with atomic_outputs([str(target)], overwrite=True) as (temporary,):
            _write(temporary, "new")
            os.mkfifo(target)
    assert target.is_fifo() and os.listdir(tmp_path) == ["sr.tif"]


def test_outputs_are_one_file_through_a_link_to_their_folder(tmp_path):
    (tmp_path / "d").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(MisrError, match="--output and --uncertainty are the same file"):
        check_outputs([str(tmp_path / "sr.tif"), str(tmp_path / "d" / "sr.tif")], [], overwrite=False)


@pytest.mark.parametrize("link", ["hard-link", "folder-link"])
def test_an_output_reaching_an_input_through_a_link_is_refused(tmp_path, link):
    frame = tmp_path / "frame.tif"
    frame.write_text("frame")
    if link == "hard-link":
        os.link(frame, tmp_path / "sr.tif")
        output = tmp_path / "sr.tif"
    else:
        (tmp_path / "d").symlink_to(tmp_path, target_is_directory=True)
        output = tmp_path / "d" / "frame.tif"
    with pytest.raises(MisrError, match="would overwrite an input"):
        check_outputs([str(output)], [str(frame)], overwrite=True)
    assert frame.read_text() == "frame"


def test_two_existing_hard_links_as_both_outputs_are_one_file(tmp_path):
    (tmp_path / "sr.tif").write_text("old")
    os.link(tmp_path / "sr.tif", tmp_path / "unc.tif")
    with pytest.raises(MisrError, match="same file"):
        check_outputs([str(tmp_path / "sr.tif"), str(tmp_path / "unc.tif")], [], overwrite=True)


def test_an_output_name_too_long_for_the_file_system_is_one_line(tmp_path):
    with pytest.raises(MisrError, match=r"file name too long \(304 bytes; this file system takes at most 255\)"):
        check_outputs([str(tmp_path / ("x" * 300 + ".tif"))], [], overwrite=False)


def test_partial_files_have_a_recognisable_name(tmp_path):
    with atomic_outputs([str(tmp_path / "sr.tif")]) as (temporary,):
        name = os.path.basename(temporary)
        assert name.startswith(".sr.tif.misr-") and name.endswith(f"-{os.getpid()}-{name.split('-')[-1]}")
        assert name.endswith(".partial.tif")
    assert os.listdir(tmp_path) == ["sr.tif"]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_next_run_removes_the_partial_files_of_dead_runs_only(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stem = f".sr.tif.misr-{outputs.HOST}"
        dead = tmp_path / f"{stem}-{_dead_pid()}-0a1b2c3d.partial.tif"
        alive = tmp_path / f"{stem}-{live.pid}-0a1b2c3d.partial.tif"
        elsewhere = tmp_path / f".sr.tif.misr-00000000-{_dead_pid()}-0a1b2c3d.partial.tif"  # another host
        other_output = tmp_path / f".unc.tif.misr-{outputs.HOST}-{_dead_pid()}-0a1b2c3d.partial.tif"
        for path in (dead, alive, elsewhere, other_output, Path(str(dead) + ".aux.xml")):
            path.write_text("partial")
        notes = check_outputs([str(tmp_path / "sr.tif")], [], overwrite=False)
        assert notes == [f"{tmp_path / 'sr.tif'}: removed 2 partial file(s) of an interrupted run"]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (alive, elsewhere, other_output))
    finally:
        live.kill()
        live.wait()


def test_a_backup_left_by_a_killed_commit_is_put_back(tmp_path):
    """Killed between moving the old output aside and putting the new one in place: the old
    output is restored by the next run, not lost."""
    backup = tmp_path / f".sr.tif.misr-{outputs.HOST}-{_dead_pid()}-0a1b2c3d.old"
    backup.write_text("the user's old result")
    assert remove_stale_work_files(str(tmp_path / "sr.tif"))
    assert (tmp_path / "sr.tif").read_text() == "the user's old result" and not backup.exists()


@pytest.mark.parametrize("name,problem", [("sr.png", "Portable Network Graphics"), ("sr.jpg", "JPEG JFIF"),
                                          ("sr.vrt", "Virtual Raster"), ("sr.tif", None), ("sr.TIFF", None),
                                          ("sr", None), ("sr.result", None)])
def test_an_output_named_for_another_raster_format_is_refused(name, problem):
    if problem is None:
        check_geotiff_name(name)
    else:
        with pytest.raises(MisrError, match=f"{problem} files, but the outputs are GeoTIFFs: give a .tif name"):
            check_geotiff_name(name)
