"""One batch: read the manifest, check every row, skip what is done, run the rest on a Dask
cluster, write the report. `misr batch` calls `run_batch`; from Python, pass `client=` to run on
any cluster (Dask Gateway, dask-jobqueue, dask-kubernetes) without going through an address."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import MisrError
from ..pipeline import Reporter
from .cluster import GPU, machine_size, open_client, wait_for_workers, workers_of
from .manifest import BadRow, Scene, read_manifest
from .outcome import DONE, FAILED, INVALID, INTERRUPTED, SKIPPED, SceneOutcome
from .plan import Plan, manifest_order, plan_batch
from .provenance import checksum
from .report import counts, write_report
from .runner import DEFAULT_RETRIES, run_scenes


@dataclass(frozen=True)
class BatchOptions:
    """How `misr batch` runs a manifest (its options, same names)."""

    manifest: str
    output: str | None = None  # folder of relative and default outputs, and of the report
    defaults: dict[str, Any] = field(default_factory=dict)  # request fields for every row
    scheduler: str | None = None  # an existing cluster's address or scheduler file
    workers: int | None = None  # local cluster: workers (default: sized to the machine)
    torch_threads: int | None = None  # torch threads per worker
    retries: int = DEFAULT_RETRIES
    skip_invalid: bool = False
    dashboard_address: str = ":8787"


@dataclass
class BatchResult:
    outcomes: list[SceneOutcome]
    report_csv: Path
    report_json: Path
    summary: str

    @property
    def ok(self) -> bool:
        return not any(outcome.status in (FAILED, INVALID, INTERRUPTED) for outcome in self.outcomes)


class InvalidRows(MisrError):
    """Rows of the manifest failed the up-front checks: nothing was run."""

    def __init__(self, message: str, rows: list[BadRow]):
        super().__init__(message)
        self.rows = rows


def run_batch(options: BatchOptions, progress: Reporter | None = None, client: Any = None) -> BatchResult:
    """Run the manifest and write its report. InvalidRows (nothing run) if a row is invalid, unless
    `skip_invalid` (they are reported, skipped, and make the result not `ok`, as failed scenes do).
    `client`: a `distributed.Client` of a cluster to use (not closed)."""
    progress = progress or _Quiet()
    started = time.perf_counter()
    if options.retries < 0:
        raise MisrError(f"--retries {options.retries}: must be at least 0")
    folder = Path(options.output or Path(options.manifest).resolve().parent)
    if not folder.is_dir():
        raise MisrError(f"{folder}: output folder does not exist")
    plan = plan_batch(*read_manifest(options.manifest, folder, options.defaults))
    if plan.invalid and not options.skip_invalid:
        raise InvalidRows(f"{options.manifest}: {len(plan.invalid)} invalid row(s); nothing was run "
                          "(fix them, or pass --skip-invalid to run the others)", plan.invalid)
    for row in plan.invalid:
        progress.event("warning", message=f"{row} (skipped)")
    outcomes = [SceneOutcome(row.id, INVALID, message=row.message) for row in plan.invalid]
    about: dict[str, Any] = {"scheduler": options.scheduler or ("given" if client else "local"),
                             "workers": 0, "dashboard": None}
    try:
        outcomes += _skipped(plan.skipped)
        if plan.todo:
            _run_on_cluster(plan, options, progress, client, about, outcomes)
        else:
            progress.event("start", scenes=_total(plan), to_run=0, skipped=len(plan.skipped),
                           invalid=len(plan.invalid), workers=0, dashboard=None)
    except KeyboardInterrupt:  # what ended is in the report, the rest "interrupted"
        ended = {outcome.scene for outcome in outcomes}
        outcomes += [SceneOutcome(scene.id, INTERRUPTED, output=scene.request.output,
                                  uncertainty=scene.request.uncertainty or "")
                     for scene in plan.todo if scene.id not in ended]
        _report(outcomes, plan, options, folder, about, started)
        raise
    return _report(outcomes, plan, options, folder, about, started)


def _run_on_cluster(plan: Plan, options: BatchOptions, progress: Reporter, client: Any,
                    about: dict[str, Any], outcomes: list[SceneOutcome]) -> None:
    """Start (or join) the cluster and run the scenes to run, adding each outcome as it ends."""
    device = str(options.defaults.get("device", "auto"))
    size = None if options.scheduler or client is not None else \
        machine_size(device, options.workers, options.torch_threads)
    todo = plan.todo
    if size is not None and size.gpus:  # each GPU worker sees one device, its own
        todo = [replace(scene, request=replace(scene.request, device="cuda")) for scene in todo]
    threads = size.torch_threads if size else options.torch_threads
    with open_client(options.scheduler, size, options.dashboard_address) if client is None \
            else nullcontext(client) as joined:
        wait_for_workers(joined)
        workers = workers_of(joined)
        gpu = device != "cpu" and any(worker.get("resources", {}).get(GPU) for worker in workers)
        about.update(workers=len(workers), dashboard=joined.dashboard_link, gpu_workers=gpu,
                     torch_threads=threads)
        progress.event("start", scenes=_total(plan), to_run=len(todo), skipped=len(plan.skipped),
                       invalid=len(plan.invalid), workers=len(workers), dashboard=joined.dashboard_link)
        _note(progress, f"misr batch: {len(todo)} scene(s) to run on {len(workers)} Dask worker(s), "
                        f"{len(plan.skipped)} already done; dashboard: {joined.dashboard_link}")
        finished = 0

        def ended(outcome: SceneOutcome) -> None:
            nonlocal finished
            finished += 1
            outcomes.append(outcome)
            if outcome.status == FAILED:
                progress.event("warning", message=f"scene {outcome.scene} failed: {outcome.message}")
            for warning in outcome.warnings:
                progress.event("warning", message=f"scene {outcome.scene}: {warning}")
            _scene_progress(progress, outcome, finished, len(todo))

        def retried(scene: Scene, attempt: int, error: str) -> None:
            progress.event("warning", message=f"scene {scene.id}: attempt {attempt} failed ({error}); retrying")

        def stopping(running: int, grace: float) -> None:
            _note(progress, f"misr batch: stopping; waiting up to {grace:.0f} s for the {running} scene(s) "
                            "running to finish (interrupt again to stop at once)")

        run_scenes(joined, todo, retries=options.retries, resources={GPU: 1} if gpu else None,
                   torch_threads=threads, on_outcome=ended, on_retry=retried, on_stop=stopping)


def _skipped(scenes: list[Scene]) -> list[SceneOutcome]:
    """Outcomes of the scenes already done, with their outputs' checksums (read in parallel)."""
    def outcome(scene: Scene) -> SceneOutcome:
        request = scene.request
        return SceneOutcome(scene.id, SKIPPED, output=request.output, output_sha256=checksum(request.output),
                            uncertainty=request.uncertainty or "", uncertainty_sha256=checksum(request.uncertainty))
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(outcome, scenes))


def _report(outcomes: list[SceneOutcome], plan: Plan, options: BatchOptions, folder: Path,
            about: dict[str, Any], started: float) -> BatchResult:
    """Write the report (the scenes in manifest order) and say what happened in one line."""
    everything = list(outcomes)
    order = manifest_order(plan)
    everything.sort(key=lambda outcome: order.get(outcome.scene, 0))
    about["seconds"] = round(time.perf_counter() - started, 2)
    csv_path, json_path = write_report(everything, folder, options.manifest, about)
    found = counts(everything)
    rate = f", {found[DONE] / about['seconds'] * 60:.1f} scenes/min on {about['workers']} worker(s)" \
        if found[DONE] and about["workers"] else ""
    parts = [f"{found[status]} {status}" for status in found if found[status] or status in (DONE, FAILED)]
    summary = (f"{options.manifest}: {len(everything)} scenes: {', '.join(parts)} "
               f"in {about['seconds']} s{rate}; report: {csv_path}")
    if found[FAILED]:
        failed = [outcome for outcome in everything if outcome.status == FAILED]
        summary += f" (first failure: scene {failed[0].scene}: {failed[0].message})"
    return BatchResult(everything, csv_path, json_path, summary)


def _scene_progress(progress: Reporter, outcome: SceneOutcome, finished: int, total: int) -> None:
    """A progress event per scene, with its outcome for machines."""
    message = f"{finished}/{total} scenes (scene {outcome.scene}: {outcome.status})"
    if _json(progress):
        progress.event("progress", fraction=round(finished / total, 4), message=message, scene=outcome.scene,
                       status=outcome.status, seconds=outcome.seconds, device=outcome.device,
                       worker=outcome.worker, attempts=outcome.attempts)
    else:
        progress.update(finished / total, message)


class _Quiet:
    def event(self, name: str, **fields: Any) -> None:
        pass

    def update(self, fraction: float, message: str = "") -> None:
        pass


def _total(plan: Plan) -> int:
    return len(plan.todo) + len(plan.skipped) + len(plan.invalid)


def _json(progress: Reporter) -> bool:
    return getattr(progress, "mode", None) == "json"


def _note(progress: Reporter, text: str) -> None:
    note = getattr(progress, "note", None)
    if note is not None:
        note(text)
