# qgis-misr: `make demo` and `make test` set everything up on a fresh Debian machine.
VENV := .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test plugin-zip clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PY) -m misr_engine.demo

test: setup
	@$(PY) -m pytest -q

plugin-zip: setup
	@$(PY) scripts/build_plugin_zip.py

clean:
	rm -rf $(VENV) build dist demo_output
