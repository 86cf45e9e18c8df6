"""What a changed field moves in the radiometric fits of given change-study scenes, the registration held
at the unchanged stack's (probe_variants.patch applied; switches as with_flags.py). From scripts/:

    HUBER=on VOTERS=on ../.venv/bin/python ../docs/evaluation/radiometry_fit_stability/radiometry_jump.py 43 62
"""
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from misr_engine.datasets.samples import build_samples
from misr_engine.datasets.sentinel2 import VALIDATION_WINDOW, sentinel2_band_paths
from misr_engine.datasets.simulate import Degradation
from misr_engine.rasters.stack import Stack
from misr_engine.registration import radiometry
from misr_engine.registration.streamed import RegisteredRows, scene_radiometry, stack_registration

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import change_away_study as cas  # noqa: E402

radiometry.FLAT_SHARE = None if os.environ.get("FLAT", "off") == "off" else float(os.environ["FLAT"])
radiometry.VOTERS_WITH_BLOCKS = os.environ.get("VOTERS", "off") == "on"
radiometry.HUBER = os.environ.get("HUBER", "off") == "on"
wanted = [int(a) for a in sys.argv[1:]]
n = max(wanted) + 1
scenes = build_samples(sentinel2_band_paths(cas.BANDS), VALIDATION_WINDOW, n, cas.LR_SIDE, cas.FRAMES, seed=7,
                       conditions=replace(Degradation(), change_probability=0.0), workers=1,
                       featureless_keep=0.0, registered=False)
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True, linewidth=150)
for index, (frames, masks, shifts) in enumerate(zip(scenes["frames"], scenes["masks"], scenes["true_shifts"])):
    field, which = cas.field_slices(rng), rng.choice(cas.FRAMES, cas.CHANGED_FRAMES, replace=False)
    if index not in wanted:
        continue
    changed = frames.copy()
    for t in which:
        changed[t] += cas.RELATIVE_CHANGE * float(np.median(frames[masks])) * cas.field_in_frame(field, shifts[t])
    print(f"scene {index}: changed frames {sorted(which)}")
    before_stack, after_stack = Stack.in_memory(frames, masks), Stack.in_memory(changed, masks)
    moves, reference = stack_registration(before_stack)
    print("  reference", reference)
    fits = {}
    centred = radiometry.Radiometry.centred
    for name, stack in (("before", before_stack), ("after", after_stack)):
        raw = {}

        def kept_raw(fits: radiometry.Radiometry) -> radiometry.Radiometry:
            raw["fits"] = fits  # before centring: the gains' weights and the voters
            return centred(fits)

        radiometry.Radiometry.centred = kept_raw
        try:
            fits[name] = scene_radiometry(RegisteredRows(stack, moves), reference)
        finally:
            radiometry.Radiometry.centred = centred
        first = raw["fits"]
        print(f"  {name}: raw gains {first.gains} offsets {first.offsets} fitted {first.fitted.astype(int)} "
              f"level {first.level:.1f}")
        print(f"  {name}: centred gains {fits[name].gains} offsets {fits[name].offsets}")
    level = float(np.median(frames[masks]))
    mapped = {name: (level - fit.offsets) / fit.gains for name, fit in fits.items()}  # each frame's value at the level
    print(f"  mapped level per frame, % move: {100 * (mapped['after'] - mapped['before']) / level}")
