"""Proba-V-style scene folders (`misr make-dataset --probav`) and dataset cards, on real data.

The scenes are cut from the committed sample (real Sentinel-2 HR, its simulated LR frames and
their cloud masks) and written as 16-bit PNGs (one scene as GeoTIFFs) laid out as the Proba-V
Kelvins challenge: SCENE/LR000.png, QM000.png, ..., HR.png, SM.png.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from misr_engine.datasets import probav
from misr_engine.resources import sample_dir
from misr_engine.cli import main
from misr_engine.datasets.samples import load_samples
from misr_engine.datasets.cards import arrays_of, card_path, expected_arrays, simulated_card, simulated_set
from misr_engine.errors import MisrError
from misr_engine.imaging.robust import NORMAL_MAD
from misr_engine.inference.normalisation import MAX_FLOOR_STDS, MAX_NOISE_UNITS, haar_diagonal
from misr_engine.registration.stack import register, subpixel_phase
from misr_engine.datasets.simulate import TRAINING, Degradation

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = sample_dir()
LR = 48  # LR crop side; HR crops are 3x
# (sample frame numbers, LR crop origin, suffix) of the two scenes; frame 06 is fully cloudy.
SCENE_A = ((1, 2, 4, 6, 7), (0, 0), ".png")  # clear pixels in the crop: 1238, 1553, 1998, 0, 885
SCENE_B = ((3, 7), (48, 48), ".tif")  # 2304, 1958
MAX_FRAMES = 3


def sample_band(name: str) -> np.ndarray:
    return gdal.Open(str(SAMPLE / name)).ReadAsArray()


def write_raster(path: Path, array: np.ndarray) -> None:
    """A single-band raster without georeferencing (PNG or GeoTIFF by suffix), 16-bit or 8-bit."""
    data_type = gdal.GDT_UInt16 if array.dtype == np.uint16 else gdal.GDT_Byte
    memory = gdal.GetDriverByName("MEM").Create("", array.shape[1], array.shape[0], 1, data_type)
    memory.GetRasterBand(1).WriteArray(array)
    driver = "PNG" if path.suffix == ".png" else "GTiff"
    gdal.GetDriverByName(driver).CreateCopy(str(path), memory)


def lr_crop(name: str, origin: tuple[int, int], size: int = LR) -> np.ndarray:
    y, x = origin
    return sample_band(name)[y:y + size, x:x + size]


def hr_crop(origin: tuple[int, int], size: int = LR) -> np.ndarray:
    y, x = origin
    return sample_band("reference_hr.tif")[3 * y:3 * (y + size), 3 * x:3 * (x + size)]


def status_map(shape: tuple[int, int]) -> np.ndarray:
    """SM: clear except a 20 x 30 block in the top-left corner."""
    status = np.full(shape, 255, np.uint8)
    status[:20, :30] = 0
    return status


def write_scene(folder: Path, numbers: tuple[int, ...], origin: tuple[int, int], suffix: str,
                size: int = LR) -> None:
    folder.mkdir(parents=True)
    for index, number in enumerate(numbers):
        write_raster(folder / f"LR{index:03d}{suffix}", lr_crop(f"frame_{number:02d}.tif", origin, size))
        mask = lr_crop(f"mask_{number:02d}.tif", origin, size)
        write_raster(folder / f"QM{index:03d}{suffix}", (mask != 0).astype(np.uint8) * 255)
    hr = hr_crop(origin, size)
    write_raster(folder / f"HR{suffix}", hr)
    write_raster(folder / f"SM{suffix}", status_map(hr.shape))


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """train/NIR/imgset0000 (PNG) and train/NIR/imgset0001 (GeoTIFF)."""
    base = tmp_path / "train"
    for name, (numbers, origin, suffix) in (("imgset0000", SCENE_A), ("imgset0001", SCENE_B)):
        write_scene(base / "NIR" / name, numbers, origin, suffix)
    return base


def clearest_first(numbers: tuple[int, ...], origin: tuple[int, int]) -> list[int]:
    counts = {n: int((lr_crop(f"mask_{n:02d}.tif", origin) != 0).sum()) for n in numbers}
    return [n for n in sorted(numbers, key=lambda n: -counts[n]) if counts[n] > 0]


def run_cli(capsys, *args: str) -> tuple[int, str]:
    status = main(["make-dataset", *args])
    return status, capsys.readouterr().err


# --- reading ------------------------------------------------------------------------------


def test_scene_folders_are_found_one_level_down_in_name_order(root):
    assert [p.name for p in probav.find_scene_folders(root)] == ["imgset0000", "imgset0001"]
    assert [p.name for p in probav.find_scene_folders(root / "NIR")] == ["imgset0000", "imgset0001"]
    assert probav.find_scene_folders(root / "NIR" / "imgset0001") == [root / "NIR" / "imgset0001"]


def test_shapes_order_padding_and_exact_values(root):
    samples = probav.load_probav(root, max_frames=MAX_FRAMES, workers=1, registered=False)
    assert set(samples) == {"frames", "masks", "hr", "hr_mask", "norm"}
    assert samples["frames"].shape == samples["masks"].shape == (2, MAX_FRAMES, LR, LR)
    assert samples["hr"].shape == samples["hr_mask"].shape == (2, 3 * LR, 3 * LR)
    assert samples["frames"].dtype == samples["hr"].dtype == samples["norm"].dtype == np.float32
    assert samples["masks"].dtype == samples["hr_mask"].dtype == bool
    for n, (numbers, origin, _) in enumerate((SCENE_A, SCENE_B)):
        kept = clearest_first(numbers, origin)[:MAX_FRAMES]
        for t, number in enumerate(kept):  # clearest first, the cloudy frame 06 dropped, values as read
            np.testing.assert_array_equal(samples["frames"][n, t], lr_crop(f"frame_{number:02d}.tif", origin))
            np.testing.assert_array_equal(samples["masks"][n, t], lr_crop(f"mask_{number:02d}.tif", origin) != 0)
        for t in range(len(kept), MAX_FRAMES):  # padding: fully masked zero frames
            assert not samples["masks"][n, t].any() and not samples["frames"][n, t].any()
        np.testing.assert_array_equal(samples["hr"][n], hr_crop(origin))
        np.testing.assert_array_equal(samples["hr_mask"][n], status_map((3 * LR, 3 * LR)) != 0)
    assert clearest_first(*SCENE_A[:2]) == [4, 2, 1, 7]  # the first scene lost its least clear frame
    counts = samples["masks"].sum(axis=(2, 3))
    assert (np.diff(counts[0]) <= 0).all()


def test_frame_count_is_the_largest_scene_up_to_max_frames(root):
    samples = probav.load_probav(root, max_frames=12, workers=1, registered=False)
    assert samples["frames"].shape[1] == 4  # scene A: 5 frames, one fully cloudy
    assert samples["masks"][1].any(axis=(1, 2)).tolist() == [True, True, False, False]


def test_registered_like_the_engine_with_scene_normalisation(root):
    raw = probav.load_probav(root, max_frames=MAX_FRAMES, workers=1, registered=False)
    samples = probav.load_probav(root, max_frames=MAX_FRAMES, workers=2)
    assert samples["shifts"].shape == (2, MAX_FRAMES, 2) and samples["shifts"].dtype == np.float32
    for n in range(2):
        real = raw["masks"][n].any(axis=(1, 2))
        frames, masks, shifts = register(raw["frames"][n][real], raw["masks"][n][real])
        np.testing.assert_array_equal(samples["frames"][n][real], np.asarray(frames, np.float32))
        np.testing.assert_array_equal(samples["masks"][n][real], masks)
        np.testing.assert_allclose(samples["shifts"][n][real], subpixel_phase(shifts))
        assert not samples["masks"][n][~real].any() and not samples["shifts"][n][~real].any()
        clear = samples["frames"][n][samples["masks"][n]].astype(np.float64)
        centre = np.median(clear)  # robust: the median and the largest of 1.4826 MAD, std / 2 and
        # the noise floor (the noise / MAX_NOISE_UNITS, at most MAX_FLOOR_STDS standard deviations)
        noise = np.median(np.abs(haar_diagonal(samples["frames"][n], samples["masks"][n]))) / NORMAL_MAD
        spread = max(1.4826 * np.median(np.abs(clear - centre)), 0.5 * clear.std(),
                     min(noise / MAX_NOISE_UNITS, MAX_FLOOR_STDS * clear.std()))
        np.testing.assert_allclose(samples["norm"][n], [centre, spread], rtol=1e-5)
    np.testing.assert_array_equal(samples["hr"], raw["hr"])


# --- the command line ---------------------------------------------------------------------


def test_make_dataset_probav_writes_npz_and_card(root, tmp_path, capsys):
    output = tmp_path / "probav.npz"
    status, err = run_cli(capsys, "--probav", str(root), "-o", str(output), "--max-frames", str(MAX_FRAMES),
                          "--workers", "1")
    assert status == 0, err
    samples = load_samples(output)
    assert samples["frames"].shape == (2, MAX_FRAMES, LR, LR) and samples["registered"].item()
    assert {"shifts", "hr_mask", "norm"} <= set(samples)
    card = card_path(output).read_text()
    assert card_path(output) == tmp_path / "probav.card.md"
    assert "Proba-V" in card and "2 scenes" in card and f"T = {MAX_FRAMES}" in card
    assert "| `hr_mask` | 2 x 144 x 144 | bool |" in card
    assert "probav.card.md" in err


def test_make_dataset_probav_refuses_simulation_options(root, tmp_path, capsys):
    status, err = run_cli(capsys, "--probav", str(root), "-o", str(tmp_path / "x.npz"), "--count", "5")
    assert status == 2 and err.strip() == ("misr: error: --count: not used with --probav (it reads real "
                                           "scenes; use --max-frames to bound the frames per scene)")
    status, err = run_cli(capsys, "--hr", str(SAMPLE / "reference_hr.tif"), "-o", str(tmp_path / "x.npz"),
                          "--max-frames", "3")
    assert status == 2 and "--max-frames: only with --probav" in err
    assert not list(tmp_path.glob("x*"))


def test_help_states_the_default_max_frames(capsys):
    with pytest.raises(SystemExit):
        main(["make-dataset", "--help"])
    assert f"(default: {probav.DEFAULT_MAX_FRAMES})" in " ".join(capsys.readouterr().out.split())


def _remove_hr(scene: Path) -> Path:
    (scene / "HR.png").unlink()
    return scene / "HR.png"


def _hr_not_three_times(scene: Path) -> Path:
    write_raster(scene / "HR.png", hr_crop((0, 0))[:140, :144])
    return scene / "HR.png"


def _quality_map_size(scene: Path) -> Path:
    write_raster(scene / "QM001.png", np.full((LR - 8, LR), 255, np.uint8))
    return scene / "QM001.png"


def _all_cloudy(scene: Path) -> Path:
    for quality in scene.glob("QM*.png"):
        write_raster(quality, np.zeros((LR, LR), np.uint8))
    return scene


def _status_map_size(scene: Path) -> Path:
    write_raster(scene / "SM.png", np.full((3 * LR, 3 * LR - 3), 255, np.uint8))
    return scene / "SM.png"


def _missing_quality_map(scene: Path) -> Path:
    (scene / "QM002.png").unlink()
    return scene / "QM002.png"


def _other_scene_size(scene: Path) -> Path:
    other = scene.parent / "imgset0001"
    shutil.rmtree(other)
    write_scene(other, (3, 7), (0, 0), ".png", size=LR - 6)
    return other


@pytest.mark.parametrize("damage, problem", [
    (_remove_hr, "not found"),
    (_hr_not_three_times, "expected exactly 3x the LR size"),
    (_quality_map_size, "quality map is 48x40, its frame LR001.png is 48x48"),
    (_all_cloudy, "every LR frame is fully cloudy"),
    (_status_map_size, "status map is 141x144, HR.png is 144x144"),
    (_missing_quality_map, "not found (the quality map of LR002.png"),
    (_other_scene_size, "all scenes of a dataset must share one LR size"),
])
def test_bad_scene_is_a_one_line_error_naming_the_file(root, tmp_path, capsys, damage, problem):
    culprit = damage(root / "NIR" / "imgset0000")
    output = tmp_path / "bad.npz"
    status, err = run_cli(capsys, "--probav", str(root), "-o", str(output), "--workers", "1")
    assert status == 2
    assert err.count("\n") == 1 and err.startswith(f"misr: error: {culprit}") and problem in err, err
    assert not output.exists() and not card_path(output).exists()
    with pytest.raises(MisrError, match="^" + re.escape(str(culprit))):
        probav.load_probav(root, workers=1)


def test_no_scene_folder(tmp_path):
    with pytest.raises(MisrError, match="no Proba-V scene folders found"):
        probav.load_probav(tmp_path)
    with pytest.raises(MisrError, match="not a folder"):
        probav.load_probav(tmp_path / "missing")


# --- dataset cards ------------------------------------------------------------------------


def test_card_lists_every_degradation_field_with_its_value():
    conditions = Degradation(max_shift_lr=0.6, psf_sigma=(0.9, 1.3))
    spec = dataclasses.replace(simulated_set([str(SAMPLE / "reference_hr.tif")], "holdout", 8, 16, 5, 3),
                               conditions=conditions)
    card = simulated_card(spec, expected_arrays(spec), "s.npz", "s.npz")
    for item in dataclasses.fields(Degradation):
        assert f"| `{item.name}` |" in card
    assert "| `max_shift_lr` | 0.6 |" in card and "| `psf_sigma` | [0.9, 1.3] |" in card
    assert "reference_hr.tif" in card and "420 x 420" in card and "Licence: not recorded" in card
    assert "--count 8 --lr-size 16 --frames-per-sample 5 --seed 3" in card


def test_committed_card_is_current():
    card = (ROOT / "docs" / "dataset-card.md").read_text()
    for item in dataclasses.fields(Degradation):  # the training set's conditions
        value = getattr(TRAINING, item.name)
        shown = "[" + ", ".join(f"{v:g}" for v in value) + "]" if isinstance(value, tuple) else f"{value:g}"
        assert f"| `{item.name}` | {shown} |" in card
    assert "CC0" in card and "landsat8" in card and "never used" in card


def test_simulated_make_dataset_writes_its_card(tmp_path, capsys):
    output = tmp_path / "sim.npz"
    status, err = run_cli(capsys, "--hr", str(SAMPLE / "reference_hr.tif"), "-o", str(output), "--count", "2",
                          "--lr-size", "16", "--frames-per-sample", "3", "--workers", "1")
    assert status == 0, err
    samples = load_samples(output)
    card = card_path(output).read_text()
    assert samples["frames"].shape == (2, 3, 16, 16)
    for name, (shape, dtype) in arrays_of(samples).items():
        assert f"| `{name}` | {' x '.join(map(str, shape)) or 'scalar'} | {dtype} |" in card
    for item in dataclasses.fields(Degradation):
        assert f"| `{item.name}` |" in card
