# Two entry points, each setting up what it needs on a fresh machine (Python 3.11 + pip):
#   make demo   the whole pipeline on a generated dataset (demo/run.py): shards on a Dask LocalCluster,
#               CSTP pretraining under torchrun, retrieval and linear probe against random init
#   make test   run the test suite
# and:
#   make shards-demo   build and verify shards of the real clips in ../shared/data
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
OUT ?= out

.PHONY: setup demo shards-demo test bench clean

# CPU=1: take torch and torchvision from PyTorch's CPU-only index first (no CUDA libraries, which
# are most of the default environment); the versions are still those of constraints.txt.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

# pip prints what it collects and installs (no -q): the CUDA wheels alone are several GB, and a
# silent set-up looks hung.
$(BIN)/.installed: pyproject.toml constraints.txt
	@echo "setting up $(VENV) (torch $$(sed -n 's/^torch==//p' constraints.txt)$(if $(filter 1,$(CPU)), CPU-only, with CUDA: several GB; CPU=1 for the CPU-only build))"
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
ifeq ($(CPU),1)
	$(BIN)/python -m pip install --index-url $(TORCH_CPU_INDEX) \
		"torch==$$(sed -n 's/^torch==//p' constraints.txt)" "torchvision==$$(sed -n 's/^torchvision==//p' constraints.txt)"
endif
	$(BIN)/python -m pip install -c constraints.txt -e '.[test]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python demo/run.py --out $(OUT)/demo

shards-demo: setup
	$(BIN)/dask-submit preprocess/build_shards.py --dataset ucf101 \
		--videos $(DATA)/videos/ucf101/UCF-101 --annotations $(DATA)/annotations/ucf101 \
		--out $(OUT)/shards/ucf101 --videos-per-shard 4
	$(BIN)/python -m shards.verify $(OUT)/shards/ucf101

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/train_step.py

clean:
	rm -rf $(OUT)
