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


@pytest.mark.parametrize("debian,python,numpy", [
    ("12 (bookworm)", "3.11", "1.24.2"),
    ("13 (trixie)", "3.13", "2.2.4"),
])
def test_the_numpy_requirement_accepts_the_numpy_of_each_supported_debian(debian, python, numpy):
    """GDAL's bindings run only on the numpy Debian compiled them against (1.x on 12, 2.x on 13),
    and scripts/setup.sh pins that numpy: the engine's requirement must accept it on both."""
    import tomllib

    from packaging.requirements import Requirement
    requirements = [Requirement(line) for line in
                    tomllib.loads((REPO / "engine" / "pyproject.toml").read_text())["project"]["dependencies"]]
    environment = {"python_version": python, "python_full_version": f"{python}.0"}
    applying = [r for r in requirements if r.name == "numpy" and (r.marker is None or r.marker.evaluate(environment))]
    assert len(applying) == 1, f"Debian {debian}: numpy requirements {applying}"
    assert applying[0].specifier.contains(numpy), f"Debian {debian}: {applying[0]} refuses its numpy {numpy}"
