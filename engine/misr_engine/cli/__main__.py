"""`python -m misr_engine.cli` (how the QGIS plugin may start the engine)."""

import sys

from . import main

sys.exit(main())
