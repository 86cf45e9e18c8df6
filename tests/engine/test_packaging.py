"""The engine is a package of its own: `pip install ./engine` (not editable) carries the weights,
their model cards and the sample scene, and finds them with importlib.resources."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(folder), str(REPO / "engine")], check=True, capture_output=True, timeout=300)
    (path,) = folder.glob("misr_engine-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.slow
def test_the_wheel_carries_weights_cards_and_the_sample(wheel):
    names = set(wheel.namelist())
    from misr_engine.models.registry import MODELS
    for spec in MODELS.values():
        assert f"misr_engine/data/weights/{spec.name}.safetensors" in names
        assert f"misr_engine/data/weights/{spec.name}.md" in names
        for option in spec.shipped_weights:  # every installed option (the self-supervised weights too)
            assert f"misr_engine/data/weights/{option.file}" in names
            assert f"misr_engine/data/weights/{option.card.name}" in names
    for index in range(1, 10):
        assert f"misr_engine/data/sample/frame_{index:02d}.tif" in names
        assert f"misr_engine/data/sample/mask_{index:02d}.tif" in names
    assert "misr_engine/data/sample/reference_hr.tif" in names


@pytest.mark.slow
def test_the_wheel_installs_the_misr_command(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "misr = misr_engine.cli:main" in wheel.read(entry_points).decode()


def test_shipped_files_are_found_through_the_package_not_the_checkout():
    from misr_engine import resources
    from misr_engine.models.registry import model_spec
    package = Path(resources.__file__).resolve().parent
    assert model_spec("piunet").default_weights.is_file()
    assert package in model_spec("piunet").default_weights.resolve().parents
    frames, masks = resources.sample_paths()
    assert len(frames) == len(masks) == 9 and all(package in Path(f).resolve().parents for f in frames)
