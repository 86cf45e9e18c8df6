"""`python -m misr_engine.cli` (how the QGIS plugin may start the engine)."""

import sys

from . import main

if __name__ == "__main__":  # not when a process started with "spawn" (a Dask worker) re-imports it
    sys.exit(main())
