"""The manifest: CSV and JSON Lines rows into requests by field name, globs, paths, and one line
per bad row (no raster is read here)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import pytest

from misr_engine.batch.manifest import convert, read_manifest
from misr_engine.errors import MisrError
from misr_engine.pipeline import SuperResolveRequest


@pytest.fixture()
def archive(tmp_path) -> Path:
    for scene in ("a", "b"):
        (tmp_path / scene).mkdir()
        for index in (1, 2, 3):
            (tmp_path / scene / f"frame_{index:02d}.tif").touch()
            (tmp_path / scene / f"mask_{index:02d}.tif").touch()
    return tmp_path


def test_csv_rows_become_requests_with_globs_paths_and_typed_options(archive):
    manifest = archive / "m.csv"
    manifest.write_text("id,frames,masks,uncertainty,tile-size,align,max_frames\n"
                        "a,a/frame_*.tif,a/mask_03.tif;a/mask_01.tif;a/mask_02.tif,a_unc.tif,64,yes,\n"
                        "b,b/frame_02.tif;b/frame_01.tif,,,,,2\n")
    out = archive / "out"
    scenes, bad = read_manifest(manifest, out, {"model": "piunet", "tile_size": 32, "overwrite": True})
    assert bad == []
    a, b = scenes
    assert (a.id, a.where, a.line) == ("a", f"{manifest}:2", 2)
    assert a.request == SuperResolveRequest(
        frames=[str(archive / "a" / f"frame_{i:02d}.tif") for i in (1, 2, 3)],  # a glob: sorted
        masks=[str(archive / "a" / f"mask_{i:02d}.tif") for i in (3, 1, 2)],  # as listed
        output=str(out / "a_sr.tif"), uncertainty=str(out / "a_unc.tif"), tile_size=64, align=True,
        overwrite=True)
    assert b.request.frames == [str(archive / "b" / "frame_02.tif"), str(archive / "b" / "frame_01.tif")]
    assert (b.request.masks, b.request.uncertainty, b.request.tile_size, b.request.max_frames) == (None, None, 32, 2)


def test_a_sensor_mtf_column_is_a_number_per_scene_or_none(archive):
    manifest = archive / "m.csv"
    manifest.write_text("id,frames,sensor_mtf\na,a/frame_*.tif,0.16\nb,b/frame_*.tif,\nc,a/frame_*.tif,0.2;0.25\n")
    scenes, bad = read_manifest(manifest, archive / "out", {"sensor_mtf": [0.3]})
    assert bad == [] and [scene.request.sensor_mtf for scene in scenes] == [[0.16], [0.3], [0.2, 0.25]]
    assert scenes[0].request.psf_sigmas(2) == [pytest.approx(1.59, abs=0.01)] * 2  # one value for every band
    lines = archive / "m.jsonl"
    lines.write_text(json.dumps({"id": "a", "frames": "a/frame_*.tif", "sensor_mtf": 0.16}) + "\n")
    (scene,), bad = read_manifest(lines)
    assert bad == [] and scene.request.sensor_mtf == [0.16]  # one number stands for a list of one


def test_a_reference_frame_column_names_a_file_next_to_the_manifest(archive):
    """Like frames, relative to the manifest's folder; a frame not among the scene's is that row's
    one-line problem, not the batch's."""
    manifest = archive / "m.csv"
    manifest.write_text("id,frames,reference_frame\na,a/frame_*.tif,a/frame_02.tif\nb,b/frame_*.tif,\n")
    (archive / "out").mkdir()
    scenes, bad = read_manifest(manifest, archive / "out")
    assert bad == [] and [scene.request.reference_frame for scene in scenes] == [str(archive / "a" / "frame_02.tif"),
                                                                                  None]
    assert scenes[0].request.reference_index(scenes[0].request.frames) == 1
    scenes[0].request.check()  # one of its frames: no problem
    with pytest.raises(MisrError, match="--reference-frame .*frame_02.tif: not one of --frames"):
        replace(scenes[1].request, reference_frame=scenes[0].request.reference_frame).check()


def test_a_keep_noisy_frames_column_keeps_them_for_its_scene_only(archive):
    manifest = archive / "m.csv"
    manifest.write_text("id,frames,keep_noisy_frames\na,a/frame_*.tif,yes\nb,b/frame_*.tif,\n")
    (archive / "out").mkdir()
    scenes, bad = read_manifest(manifest, archive / "out")
    assert bad == [] and [scene.request.keep_noisy_frames for scene in scenes] == [True, False]


def test_json_lines_take_lists_strings_numbers_and_booleans(archive):
    manifest = archive / "m.jsonl"
    manifest.write_text("# one scene a line\n" + json.dumps(
        {"id": 7, "frames": ["a/frame_01.tif", "a/frame_0[23].tif"], "masks": "a/mask_*.tif",
         "output": "/abs/seven.tif", "ttf_steps": 3, "align": False, "band": None}) + "\n\n")
    (scene,), bad = read_manifest(manifest)
    assert bad == [] and scene.id == "7" and scene.line == 2
    assert scene.request.frames == [str(archive / "a" / f"frame_{i:02d}.tif") for i in (1, 2, 3)]
    assert scene.request.masks == [str(archive / "a" / f"mask_{i:02d}.tif") for i in (1, 2, 3)]
    assert (scene.request.output, scene.request.ttf_steps, scene.request.align, scene.request.band) == \
        ("/abs/seven.tif", 3, False, None)


def test_every_bad_row_is_one_line_naming_the_manifest_line_and_the_problem(archive):
    manifest = archive / "m.csv"
    manifest.write_text("id,frames,masks,output,device,tile_size,colour\n"
                        "a,a/frame_*.tif,,a.tif,,,\n"
                        ",a/frame_*.tif,,x.tif,,,\n"
                        "c,c/frame_*.tif,,,,,\n"
                        "a,b/frame_*.tif,,,,,\n"
                        "e,b/frame_*.tif,,a.tif,,,\n"
                        "f,b/frame_*.tif,,,cuda,,\n"
                        "g,b/frame_*.tif,,,,1.5,\n"
                        "h,b/frame_*.tif,,,,,red\n"
                        "i,,,,,,\n"
                        "j,b/frame_*.tif,,,,,,extra\n")
    scenes, bad = read_manifest(manifest)
    assert [scene.id for scene in scenes] == ["a"]
    assert [str(row) for row in bad] == [
        f"{manifest}:3: id: missing (every row needs a scene id, unique in the manifest)",
        f"{manifest}:4: scene c: frames: 'c/frame_*.tif' matches no file (in {archive})",
        f"{manifest}:5: scene a: id: also used at line 2",
        f"{manifest}:6: scene e: {archive / 'a.tif'}: also written by scene a",
        f"{manifest}:7: scene f: device: set for the whole batch (--device), not per scene",
        f"{manifest}:8: scene g: tile_size: '1.5' is not an integer",
        f"{manifest}:9: scene h: colour: unknown column (known: id, " + ", ".join(
            f.name for f in SuperResolveRequest.__dataclass_fields__.values()) + ")",
        f"{manifest}:10: scene i: frames: missing",
        f"{manifest}:11: scene j: 8 values for 7 columns"]


@pytest.mark.parametrize("content, message", [
    ("", "the first line must name the columns, at least id and frames (found: nothing)"),
    ("id,files\na,x.tif\n", "the first line must name the columns, at least id and frames (found: id, files)"),
    ("id,frames\n", "no scenes (one row per scene, with at least id and frames)"),
    (b"\xff\xfe\x00garbage", "not a text file (a manifest is CSV or JSON Lines, UTF-8)"),
])
def test_an_unusable_manifest_is_one_line(tmp_path, content, message):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(MisrError, match=f"^{manifest}: " + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        read_manifest(manifest)
    with pytest.raises(MisrError, match=f"^{tmp_path / 'nope.csv'}: manifest not found$"):
        read_manifest(tmp_path / "nope.csv")


def test_a_new_request_field_converts_from_its_type_alone():
    """Columns are the request's fields, converted from their declared types: a field added to
    the request (a list of band numbers, say) works in manifests without a change."""
    assert convert("bands", "3;2; 1", Optional[Sequence[int]]) == [3, 2, 1]
    assert convert("bands", [4, 5], Optional[Sequence[int]]) == [4, 5]
    assert convert("bands", None, Optional[Sequence[int]]) is None
    assert convert("mask_kind", " scl ", str) == "scl"
    assert convert("gain", "0.5", float) == 0.5
    for value, hint, message in (("x;2", Sequence[int], "'x' is not an integer"), (True, int, "True is not an integer"),
                                 ("maybe", bool, "'maybe' is not true or false"),
                                 ({"a": 1}, str, 'is not a single value'), ("3", Sequence[int], None)):
        if message is None:
            assert convert("n", value, hint) == [3]
            continue
        with pytest.raises(MisrError, match=message):
            convert("n", value, hint)


def test_issue_17_options_work_in_manifests_and_are_part_of_the_run_options(archive):
    """--bands, --mask-kind, --mask-snow, --mask-dilation and --no-auto-mask by field name, in
    CSV (`bands` as text) and JSON Lines (`bands` as an array), and in the MISR_OPTIONS tag."""
    from misr_engine.pipeline import run_options
    from misr_engine.rasters.bands import parse_bands

    (archive / "m.csv").write_text("id,frames,bands,mask-kind,mask_snow,mask_dilation,auto_mask\n"
                                   "a,a/frame_*.tif,4;3;2,scl,yes,3,\n"
                                   "b,b/frame_*.tif,all,,,,no\n")
    (a, b), bad = read_manifest(archive / "m.csv")
    assert bad == []
    assert parse_bands(a.request.bands) == [4, 3, 2] and parse_bands(b.request.bands) == "all"
    assert a.request.mask_options.kinds == ("scl",) and a.request.mask_options.snow
    assert a.request.mask_options.dilation == 3 and a.request.screening.dilation == 3
    assert b.request.auto_mask is False and b.request.screening is None
    (archive / "m.jsonl").write_text(json.dumps({"id": "c", "frames": "a/frame_*.tif", "masks": "a/mask_*.tif",
                                                 "bands": [1, 2], "mask_kind": ["scl", "fmask", "auto"]}) + "\n")
    (c,), bad = read_manifest(archive / "m.jsonl")
    assert bad == [] and list(c.request.bands) == [1, 2]
    assert c.request.mask_options.kinds == ("scl", "fmask", "auto") and c.request.screening is None
    options = json.loads(json.dumps(run_options(a.request)))
    assert {key: options[key] for key in ("bands", "mask_kind", "mask_snow", "mask_dilation", "auto_mask")} == \
        {"bands": "4;3;2", "mask_kind": ["scl"], "mask_snow": True, "mask_dilation": 3, "auto_mask": True}
    assert run_options(a.request) != run_options(b.request)
    with pytest.raises(MisrError, match=r"^--bands 1;x: give band numbers \(1,2,3\) or all$"):
        SuperResolveRequest(frames=["f.tif"], output="o.tif", bands="1;x").check()
