"""Whole archives: every scene of a manifest through the shared pipeline on a Dask cluster,
resumable and idempotent (`misr batch`; docs/scale-out.md).

`manifest` reads the rows into requests, `plan` checks them up front and skips the scenes whose
outputs carry this run's provenance (`provenance`), `cluster` starts or joins the cluster,
`runner` runs one task per scene with bounded retries, `worker` is what runs on a worker (the
network loaded once per worker), `report` writes the summary beside the outputs, and `run`
puts them together.
"""
