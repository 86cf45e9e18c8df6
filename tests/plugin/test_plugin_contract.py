"""The plugin's copy of the engine contract (qgis_misr.core.contract) is the engine's: same event
names, same exit statuses. The plugin never imports the engine; its tests may."""

from __future__ import annotations

import json
import subprocess

import pytest

from qgis_misr.core import contract

EXIT_NAMES = ("EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED")


def test_event_names_are_the_engines():
    from misr_engine import progress
    assert sorted(contract.EVENTS) == sorted(progress.EVENTS)
    assert contract.STDERR not in progress.EVENTS  # the runner's own pseudo-event


def test_exit_statuses_are_the_engines():
    from misr_engine import errors
    assert [getattr(contract, name) for name in EXIT_NAMES] == [getattr(errors, name) for name in EXIT_NAMES]
    assert (contract.EXIT_OK, contract.EXIT_INTERNAL, contract.EXIT_BAD_INPUT, contract.EXIT_INTERRUPTED) \
        == (0, 1, 2, 130)


@pytest.mark.slow
def test_the_real_engine_refuses_bad_input_with_the_contracts_event_and_status(engine, tmp_path):
    """What the names stand for, observed: a missing frame is an ``error`` event, one
    ``misr: error:`` line on stderr and exit status EXIT_BAD_INPUT."""
    result = subprocess.run(list(engine.argv) + ["super-resolve", "--frames", str(tmp_path / "gone.tif"),
                                                 "--output", str(tmp_path / "sr.tif"), "--progress", "json"],
                            capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == contract.EXIT_BAD_INPUT
    assert [event["event"] for event in events] == [contract.ERROR]
    assert result.stderr.strip().splitlines()[-1].startswith(contract.ERROR_PREFIX)


def test_the_engines_limits_are_read_whole_by_the_plugin():
    """Every limit the engine reports has a field in the plugin's EngineLimits, read as reported."""
    from misr_engine.imaging.mtf import ENGINE_MTF, MTF_RANGE
    from misr_engine.pipeline import limits

    from qgis_misr.core.engine import EngineLimits, parse_models
    reported = limits()
    _, parsed = parse_models({"models": [], "limits": reported})
    assert set(EngineLimits.__dataclass_fields__) <= set(reported)
    assert parsed.sensor_mtf_range == MTF_RANGE and parsed.engine_mtf == pytest.approx(ENGINE_MTF, abs=1e-3)
    assert parsed.min_tile_size == reported["min_tile_size"] and parsed.default_ttf_steps == reported["default_ttf_steps"]
