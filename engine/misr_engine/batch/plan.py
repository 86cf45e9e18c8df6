"""What a batch has to do: each scene of the manifest is to run, already done (skipped), or invalid.

Checked up front, before anything runs, with the one-line errors of `misr super-resolve`: the
manifest's values, the options and outputs (`SuperResolveRequest.check`), the weights, and that
every frame and mask opens as a raster. What needs the pixels or compares files (bands, grids,
clouds) is checked by each scene's own run, which fails alone if it finds a problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from ..errors import MisrError
from ..rasters.bands import open_raster
from .manifest import BadRow, Scene
from .provenance import DONE, OTHER, PARTIAL, output_state, weights_sha256


@dataclass
class Plan:
    todo: list[Scene] = field(default_factory=list)
    skipped: list[Scene] = field(default_factory=list)  # outputs exist from this very run
    invalid: list[BadRow] = field(default_factory=list)


def plan_batch(scenes: Sequence[Scene], bad_rows: Sequence[BadRow] = ()) -> Plan:
    """Sort `scenes` into to run, skipped and invalid (with `bad_rows`, the manifest's own)."""
    plan = Plan(invalid=list(bad_rows))
    for scene in scenes:
        try:
            request = scene.request
            sha = weights_sha256(request)
            if not request.overwrite:
                state = output_state(request, sha)
                if state.kind == DONE:
                    plan.skipped.append(scene)
                    continue
                if state.kind == OTHER:
                    raise MisrError(state.message)
                if state.kind == PARTIAL:  # this run's own output, its partner missing: write both again
                    request = replace(request, overwrite=True)
            request.check()
            for path in list(request.frames) + list(request.masks or []):
                open_raster(path)
            plan.todo.append(replace(scene, request=request))
        except MisrError as exc:
            plan.invalid.append(BadRow(scene.id, scene.where, scene.line, str(exc)))
    plan.invalid.sort(key=lambda row: row.line)
    return plan


def manifest_order(plan: Plan) -> dict[str, int]:
    """Each scene id's line in the manifest."""
    return {row.id: row.line for row in [*plan.todo, *plan.skipped, *plan.invalid]}
