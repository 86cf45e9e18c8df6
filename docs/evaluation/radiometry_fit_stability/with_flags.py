"""Run a study script with the probe's radiometry switches (probe_variants.patch applied) read from the
environment: FLAT (share of the flattest blocks, or off), VOTERS (on/off), HUBER (on/off). From scripts/:

    HUBER=on VOTERS=on OMP_NUM_THREADS=1 ../.venv/bin/python \\
        ../docs/evaluation/radiometry_fit_stability/with_flags.py change_away_study.py \\
        --clips 1 --centre-trims 0.125 --scenes 24 --per-scene
"""
import os
import runpy
import sys
from pathlib import Path

from misr_engine.registration import radiometry

radiometry.FLAT_SHARE = None if os.environ.get("FLAT", "off") == "off" else float(os.environ["FLAT"])
radiometry.VOTERS_WITH_BLOCKS = os.environ.get("VOTERS", "off") == "on"
radiometry.HUBER = os.environ.get("HUBER", "off") == "on"
sys.argv = sys.argv[1:]
sys.path.insert(0, str(Path(sys.argv[0]).resolve().parent))  # the study's own imports
runpy.run_path(sys.argv[0], run_name="__main__")
