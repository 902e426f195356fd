# fot_edu: two commands. `make lab` opens the notebooks, `make test` runs every test.
# Both create (or update) the same virtual environment in .venv first.
#
# TORCH: what pip installs for PyTorch. The default pins the release whose CPU build this
# project's machines keep on disk. A GPU user installs a CUDA build instead, e.g.
#   make lab TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
#
# LAB_ARGS: options for JupyterLab, passed last so they override the defaults of
# `python -m fot_edu lab` (loopback only; --allow-root as root; --no-browser without a
# display, then it prints the URL with its token), e.g.
#   make lab LAB_ARGS="--port 9999"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
LAB_ARGS ?=
STAMP := $(VENV)/.installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb apps/*.ipynb)

.PHONY: lab test reproduce venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[notebooks,test,faiss]"
	touch $(STAMP)

lab: $(STAMP)
	$(PY) -m fot_edu lab $(LAB_ARGS)

# a classroom app in Voilà, no code shown: APP=dashboard (default) or APP=race, e.g.
#   make present APP=race PRESENT_ARGS="--port 9999"
APP ?= dashboard
PRESENT_ARGS ?=
.PHONY: present
present: $(STAMP)
	$(PY) -m fot_edu present $(APP) $(PRESENT_ARGS)

test: $(STAMP)
	FOT_EDU_FAST=1 $(PY) -m pytest -q tests $(if $(NOTEBOOKS),--nbmake $(NOTEBOOKS))

# retrain every preset from scratch (minutes each on a CPU) and print new figures beside the shipped ones
reproduce: $(STAMP)  # make reproduce ARGS="--device cuda" retrains on a GPU
	$(PY) scripts/reproduce.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
