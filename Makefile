# fot_edu: two commands. `make lab` opens the notebooks, `make test` runs every test.
# Both create (or update) the same virtual environment in .venv first.
#
# TORCH: what pip installs for PyTorch. The default pins the release whose CPU build this
# project's machines keep on disk. A GPU user installs a CUDA build instead, e.g.
#   make lab TORCH="torch --index-url https://download.pytorch.org/whl/cu126"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: lab test reproduce venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[notebooks,test,faiss]"
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

test: $(STAMP)
	FOT_EDU_FAST=1 $(PY) -m pytest -q tests $(if $(NOTEBOOKS),--nbmake $(NOTEBOOKS))

# retrain every preset from scratch (minutes each on a CPU) and print new figures beside the shipped ones
reproduce: $(STAMP)
	$(PY) scripts/reproduce.py

clean:
	rm -rf $(VENV) .pytest_cache
