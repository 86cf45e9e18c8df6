"""`misr batch MANIFEST`: every scene of a manifest on a Dask cluster, resumable."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from ..errors import MisrError
from .options import add_device, add_json, add_model, add_output, add_progress

if TYPE_CHECKING:  # the batch runner (Dask) is imported when a batch runs
    from ..batch.run import BatchResult


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "batch", help="super-resolve every scene of a manifest on a Dask cluster (resumable)",
        description="Super-resolve every scene of a manifest (CSV or JSON Lines, one row per scene: id, "
                    "frames, masks, output, uncertainty and any other super-resolve option by name; "
                    "docs/scale-out.md) on a Dask cluster: a local one sized to this machine (one "
                    "worker per GPU), or an existing one (--scheduler). Every row is checked before "
                    "anything runs; scenes whose outputs exist from the same run (weights, inputs, "
                    "options) are skipped, so a stopped batch run again does only what is missing. "
                    "A report (CSV and JSON) is written beside the outputs.")
    p.add_argument("manifest", metavar="MANIFEST", help="the manifest (.csv, or .jsonl / .ndjson)")
    add_output(p, "folder of the outputs the manifest names without a folder (default name: ID_sr.tif) "
                  "and of the report (default: the manifest's folder)", metavar="DIR", default="")
    add_model(p)
    add_device(p)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="settings",
                   help="a super-resolve option for every scene, by its manifest column name "
                        "(e.g. tile_size=64, ttf_steps=20, backend=onnx); a row's own value wins")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing Dask cluster: its scheduler's address (tcp://host:8786) or "
                        "scheduler file (default: start a local cluster for this run)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local cluster: number of workers (default: one per GPU; without a GPU, one per "
                        "core as memory allows, 3 GiB each)")
    p.add_argument("--torch-threads", type=int, metavar="N",
                   help="torch threads of each worker (default: local cluster: the cores shared out; "
                        "existing cluster: each worker's Dask thread count)")
    p.add_argument("--retries", type=int, default=None, metavar="N",
                   help="run a scene again up to N times when it fails for another reason than bad "
                        "input (out of memory, a worker lost) (default: 2)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="report invalid rows and run the others (the exit status is still 2)")
    p.add_argument("--dashboard-address", default=":8787", metavar="[HOST]:PORT",
                   help="local cluster: where its Dask dashboard listens (default: :8787, another "
                        "port if taken)")
    add_progress(p)
    add_json(p)
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from ..batch.run import BatchOptions, InvalidRows, run_batch
    from ..batch.runner import DEFAULT_RETRIES
    from ..progress import Progress

    args.progress_reporter = progress = Progress(args.progress)
    args.interrupted = ("interrupted; the scenes finished so far are kept and in the report: run the same "
                        "command again to do the rest")
    defaults = settings(args.settings)
    defaults.update(model=args.model, device=args.device, overwrite=args.overwrite)
    if args.weights:
        defaults["weights"] = os.path.abspath(args.weights)
    options = BatchOptions(args.manifest, args.output or None, defaults, args.scheduler, args.workers,
                           args.torch_threads, DEFAULT_RETRIES if args.retries is None else args.retries,
                           args.skip_invalid, args.dashboard_address)
    try:
        result = run_batch(options, progress)
    except InvalidRows as exc:
        for row in exc.rows:  # every bad row, each in one line; the app adds the closing one
            if progress.mode == "json":
                progress.event("error", message=str(row))
            print(f"misr: error: {row}", file=sys.stderr)
        raise
    if args.json:
        print(json.dumps(json.loads(result.report_json.read_text())), flush=True)
    if not result.ok:
        raise MisrError(result.summary)
    progress.event("done", summary=result.summary, report=str(result.report_csv),
                   report_json=str(result.report_json), counts=_counts(result))


def settings(pairs: list[str]) -> dict[str, object]:
    """`--set FIELD=VALUE` options as request fields, converted as manifest cells are."""
    from ..batch.manifest import BATCH_FIELDS, INPUT_FIELDS, OUTPUT_FIELDS, convert, request_fields

    types = request_fields()
    values: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        field = name.strip().replace("-", "_")
        if not sep or field not in types:
            raise MisrError(f"--set {pair}: give FIELD=VALUE with a manifest column "
                            f"({', '.join(sorted(set(types) - set(BATCH_FIELDS)))})")
        if field in BATCH_FIELDS or field in INPUT_FIELDS or field in OUTPUT_FIELDS:
            raise MisrError(f"--set {pair}: {field} is not set this way "
                            f"({BATCH_FIELDS.get(field, '--weights' if field == 'weights' else 'per scene, in the manifest')})")
        values[field] = convert(field, value, types[field])
    return values


def _counts(result: BatchResult) -> dict[str, int]:
    from ..batch.report import counts
    return counts(result.outcomes)
