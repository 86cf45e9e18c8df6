"""Idempotence: a scene whose outputs carry this run's provenance is skipped; outputs of another
run are refused (unless --overwrite); a lone output of this run is written again with its partner.
Outputs are small rasters tagged as `super_resolve_files` tags them (no network runs here)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from osgeo import gdal

from misr_engine import __version__
from misr_engine.batch.manifest import Scene
from misr_engine.batch.plan import plan_batch
from misr_engine.batch.provenance import DONE, MISSING, OTHER, PARTIAL, output_state, weights_sha256
from misr_engine.models.registry import model_spec
from misr_engine.models.weights import file_sha256
from misr_engine.pipeline import PRODUCTS, SuperResolveRequest, run_options
from tests.rasters import make_raster, textured


def tagged(path: Path, request: SuperResolveRequest, product: int, **changes: str) -> Path:
    """An output raster with the tags this run would write (some `changes`d)."""
    make_raster(path, textured(6, 6, 0), gdal.GDT_Float32)
    dataset = gdal.Open(str(path), gdal.GA_Update)
    dataset.SetMetadata({"MISR_PRODUCT": PRODUCTS[product][0], "MISR_WEIGHTS_SHA256": weights_sha256(request),
                         "MISR_OPTIONS": json.dumps(run_options(request)), "MISR_ENGINE_VERSION": __version__,
                         **changes})
    dataset = None
    return path


@pytest.fixture()
def request_(tmp_path) -> SuperResolveRequest:
    frames = [str(make_raster(tmp_path / f"f{i}.tif", textured(8, 8, i))) for i in range(2)]
    return SuperResolveRequest(frames=frames, output=str(tmp_path / "sr.tif"),
                               uncertainty=str(tmp_path / "unc.tif"), tile_size=16)


def test_the_weights_hash_is_the_one_outputs_record(request_):
    assert weights_sha256(request_) == file_sha256(model_spec("piunet").default_weights)


def test_outputs_are_missing_done_partial_or_from_another_run(request_, tmp_path):
    sha = weights_sha256(request_)
    assert output_state(request_, sha).kind == MISSING
    tagged(tmp_path / "sr.tif", request_, 0)
    assert output_state(request_, sha).kind == PARTIAL
    tagged(tmp_path / "unc.tif", request_, 1)
    assert output_state(request_, sha).kind == DONE
    # a run with other options, other inputs or other weights did not make these files
    for other, why in ((replace(request_, tile_size=32), "tile_size: 16 there, 32 here"),
                       (replace(request_, ttf_steps=5), "ttf_steps: 0 there, 5 here"),
                       (replace(request_, frames=request_.frames[:1]), "other frames")):
        state = output_state(other, sha)
        assert (state.kind, state.message) == (OTHER, f"{tmp_path / 'sr.tif'}: already exists from another run ({why}); "
                                "use --overwrite to replace it"), why
    assert "(other weights)" in output_state(request_, "0" * 64).message
    # another engine version may compute another SR from the same inputs and weights
    tagged(tmp_path / "sr.tif", request_, 0, MISR_ENGINE_VERSION="0.0.9")
    assert f"(written by misr 0.0.9, this is misr {__version__})" in output_state(request_, sha).message
    tagged(tmp_path / "sr.tif", request_, 0)
    # where the batch runs and writes is not provenance
    assert output_state(replace(request_, device="cuda", batch_size=8, overwrite=True), sha).kind == DONE
    tagged(tmp_path / "unc.tif", request_, 0)  # the SR file given as the uncertainty
    assert "MISR_PRODUCT is 'super-resolved'" in output_state(request_, sha).message
    (tmp_path / "unc.tif").write_text("not a raster")
    assert "(not a raster)" in output_state(request_, sha).message


def test_the_plan_skips_done_scenes_redoes_partial_ones_and_refuses_foreign_outputs(request_, tmp_path):
    def scene(name: str, line: int, **changes) -> Scene:
        return Scene(name, f"m.csv:{line}", line, replace(request_, output=str(tmp_path / f"{name}_sr.tif"),
                                                          uncertainty=str(tmp_path / f"{name}_unc.tif"), **changes))
    done, partial, other, fresh, broken = (scene("done", 2), scene("partial", 3), scene("other", 4),
                                           scene("fresh", 5), scene("broken", 6, frames=[str(tmp_path / "x.tif")]))
    for item in (done, partial, other):
        tagged(Path(item.request.output), item.request, 0)
    tagged(Path(done.request.uncertainty), done.request, 1)
    tagged(Path(other.request.uncertainty), replace(other.request, max_frames=3), 1)
    plan = plan_batch([done, partial, other, fresh, broken])
    assert [s.id for s in plan.skipped] == ["done"]
    assert [(s.id, s.request.overwrite) for s in plan.todo] == [("partial", True), ("fresh", False)]
    assert [str(row) for row in plan.invalid] == [
        f"m.csv:4: scene other: {other.request.uncertainty}: already exists from another run "
        "(max_frames: 3 there, 15 here); use --overwrite to replace it",
        f"m.csv:6: scene broken: {tmp_path / 'x.tif'}: file not found"]
    everything = plan_batch([replace(s, request=replace(s.request, overwrite=True)) for s in (done, other)])
    assert [s.id for s in everything.todo] == ["done", "other"] and not everything.skipped  # --overwrite
