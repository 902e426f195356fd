# fot_edu: two commands. `make lab` opens the notebooks, `make test` runs every test.
# Both create (or update) the same virtual environment in .venv first, in three levels, each
# with a stamp file in .venv: PyTorch (.stamp-torch), then fot_edu with what the notebooks need
# (.stamp-lab: extras notebooks, faiss), then the test tools (.stamp-test: extra test). So
# `make test` after `make lab` only adds the test tools; editing pyproject.toml reinstalls.
#
# TORCH: pip arguments for PyTorch that replace the choice below, e.g. a CUDA 12.6 build:
#   make lab TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
# Without it scripts/choose_torch.py chooses, and says which and why: Linux without an NVIDIA GPU
# gets TORCH_PIN's CPU build from PyTorch's CPU index (when that cannot be reached, TORCH_PIN from
# the configured index); a GPU machine, macOS and Windows get TORCH_PIN from the package index.
# A .venv that already has torch keeps it (`make clean` to choose again).
#
# LAB_ARGS: options for JupyterLab, passed last so they override the defaults of
# `python -m fot_edu lab` (loopback only; --allow-root as root; --no-browser without a
# display, then it prints the URL with its token), e.g.
#   make lab LAB_ARGS="--port 9999"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?=
TORCH_PIN ?= torch==2.13.0
LAB_ARGS ?=
STAMP_TORCH := $(VENV)/.stamp-torch
STAMP_LAB := $(VENV)/.stamp-lab
STAMP_TEST := $(VENV)/.stamp-test
NOTEBOOKS := $(wildcard notebooks/*.ipynb apps/*.ipynb)

.PHONY: lab test reproduce venv venv-lab venv-test preflight clean

# can $(PYTHON) create the venv? one line, with the fix when it cannot
preflight:
	@$(PYTHON) scripts/preflight.py $(PYTHON)

$(STAMP_TORCH):
	@echo "==> [1/3] $(VENV): a virtual environment with pip and PyTorch"
	@test -x $(PY) || $(PYTHON) scripts/preflight.py $(PYTHON)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then \
	    echo "torch: $$($(PY) -c 'import torch; print(torch.__version__)') is already in $(VENV), kept (make clean to choose again)"; \
	else \
	    args="$$($(PY) scripts/choose_torch.py --pin '$(TORCH_PIN)' --torch '$(TORCH)')" && \
	    echo "$(PY) -m pip install $$args" && $(PY) -m pip install $$args; \
	fi
	touch $@

$(STAMP_LAB): $(STAMP_TORCH) pyproject.toml
	@echo "==> [2/3] fot_edu and what the notebooks need (extras notebooks, faiss)"
	$(PY) -m pip install -e ".[notebooks,faiss]"
	touch $@

$(STAMP_TEST): $(STAMP_LAB) pyproject.toml
	@echo "==> [3/3] the test tools (extras test and book: tests/browser/test_book.py builds the book)"
	$(PY) -m pip install -e ".[notebooks,test,faiss,book]"
	@# the CFF 1.2.0 schema for tests/test_project_files.py: cffconvert's wheel, downloaded, not
	@# installed (it requires jsonschema<4, which JupyterLab does not accept)
	$(PY) -m pip download --no-deps --quiet --dest $(VENV)/cffconvert "cffconvert==2.0.0"
	touch $@

venv-lab: $(STAMP_LAB)
venv-test: $(STAMP_TEST)
venv: venv-test

lab: $(STAMP_LAB)
	$(PY) -m fot_edu lab $(LAB_ARGS)

# a classroom app in Voilà, no code shown: APP=dashboard (default) or APP=race, e.g.
#   make present APP=race PRESENT_ARGS="--port 9999"
APP ?= dashboard
PRESENT_ARGS ?=
.PHONY: present
present: $(STAMP_LAB)
	$(PY) -m fot_edu present $(APP) $(PRESENT_ARGS)

test: $(STAMP_TEST)
	FOT_EDU_FAST=1 $(PY) -m pytest -q tests $(if $(NOTEBOOKS),--nbmake $(NOTEBOOKS))

# the course book: a static, offline HTML site of the README, the guides and the nine notebooks,
# each run top to bottom (normal mode; FAST=1: fast mode, as CI). Open book/_build/html/index.html.
# BOOK_ARGS: more options for book/build.py, e.g. BOOK_ARGS="--execute 01_memory_attention"
FAST ?=
BOOK_ARGS ?=
STAMP_BOOK := $(VENV)/.stamp-book
$(STAMP_BOOK): $(STAMP_LAB) pyproject.toml
	@echo "==> the book's tools (extra book)"
	$(PY) -m pip install -e ".[notebooks,faiss,book]"
	touch $@

.PHONY: book
book: $(STAMP_BOOK)
	$(PY) book/build.py $(if $(filter 1 yes true,$(FAST)),--fast,--normal) $(BOOK_ARGS)

# retrain every preset from scratch (minutes each on a CPU) and print new figures beside the shipped ones
reproduce: $(STAMP_LAB)  # make reproduce ARGS="--device cuda" retrains on a GPU
	$(PY) scripts/reproduce.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache book/_build
