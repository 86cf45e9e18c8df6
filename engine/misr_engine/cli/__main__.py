"""`python -m misr_engine.cli` (how the QGIS plugin may start the engine)."""

import sys

from .app import main

sys.exit(main())
