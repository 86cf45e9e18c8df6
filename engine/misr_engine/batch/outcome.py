"""What became of one scene of a batch: a row of the report."""

from __future__ import annotations

from dataclasses import dataclass, field

DONE, SKIPPED, FAILED, INVALID, INTERRUPTED = "done", "skipped", "failed", "invalid", "interrupted"
"""Scene statuses: written by this batch; already done (outputs with this run's provenance);
its run failed (after the retries); refused by the up-front checks; not finished when the batch
was stopped (a scene running then may still have been committed: a rerun skips it if so)."""


@dataclass
class SceneOutcome:
    scene: str
    status: str
    seconds: float | None = None  # on its worker, the network's loading included (last attempt)
    device: str = ""  # where it ran (the torch device or ONNX Runtime's)
    worker: str = ""  # the Dask worker's address
    attempts: int = 0
    output: str = ""
    output_sha256: str | None = None
    uncertainty: str = ""
    uncertainty_sha256: str | None = None
    frames: int | None = None  # the frames used (after any left out as far noisier than the others)
    frames_left_out: str = ""  # their names, '; '-separated ('a.tif (band 2)': of that band only)
    message: str = ""  # the error, for failed and invalid scenes
    warnings: list[str] = field(default_factory=list)
    loaded_model: bool = False  # this scene loaded the network on its worker (the first there)
    peak_rss_mb: float | None = None  # the worker process's peak memory so far (Linux, macOS)
