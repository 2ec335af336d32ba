# diffedit-lab — a fresh machine needs only `make lab` (JupyterLab on notebooks/) or `make test`.
# Both create .venv when it is missing and (re)install the package with its dev extra whenever
# pyproject.toml or the constraints file changed (a stamp file in .venv keeps re-runs fast).
#
#   make lab          JupyterLab on notebooks/            LAB_ARGS="--no-browser --port 8890"
#   make app          the explorer (notebook 05) as a web page with Voila   APP_ARGS="--no-browser --port 8867"
#   make test         pytest tests, then nbval on notebooks/*.ipynb (if any)
#   make test-gpu     gpu-marked tests + the notebooks with DIFFEDIT_DEVICE=cuda DIFFEDIT_DTYPE=float16
#   make strip        strip outputs from notebooks/*.ipynb (cells tagged keep_output keep theirs)
#   make clean        build outputs, caches, the install stamp  (make distclean: also .venv)
#
# Variables: PYTHON (python3), VENV (.venv), CONSTRAINTS (constraints/cpu.txt when there is no
# `nvidia-smi`, empty otherwise), PIP_ARGS (extra pip arguments, e.g. an --extra-index-url),
# PYTEST_ARGS (e.g. "-x -k mask" or "-n 2"), NBVAL_CELL_TIMEOUT (seconds per notebook cell).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.diffedit-lab-installed

# CPU machines install an explicit CPU build of torch (see constraints/cpu.txt); CUDA machines
# keep pip's default (CUDA) build. Nothing is pinned for users who `pip install` the package.
HAVE_CUDA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
CONSTRAINTS ?= $(if $(HAVE_CUDA),,constraints/cpu.txt)
PIP_ARGS ?=

# nbval runs the teaching notebooks and the exercises' *solutions*; the student versions
# (notebooks/exercises/*.ipynb) raise NotImplementedError by design: tests/test_exercises.py
# checks that each of their stubs fails its check instead.
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb)) $(sort $(wildcard notebooks/exercises/solutions/*.ipynb))
STUDENT_NOTEBOOKS := $(sort $(wildcard notebooks/exercises/*.ipynb))
PYTEST_ARGS ?=
NBVAL_CELL_TIMEOUT ?= 1200
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with .nbval-sanitize.cfg \
	--nbval-cell-timeout=$(NBVAL_CELL_TIMEOUT)
# Tests never reach a model hub: everything they load is built in code or shipped in the package.
TEST_ENV := HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 MPLBACKEND=Agg
GPU_ENV := DIFFEDIT_DEVICE=cuda DIFFEDIT_DTYPE=float16
PYTEST := $(PY) -m pytest

# pytest exits 5 when it collected no test. For the main suite that is a failure (an empty or
# broken collection must not pass as green). For the optional stages (gpu-marked tests) it only
# means "nothing of that kind here": reported, and accepted.
define pytest_may_be_empty
rc=0; $(1) || rc=$$?; \
if [ $$rc -eq 5 ]; then echo "make: $(2): no tests collected - nothing to run"; rc=0; fi; \
exit $$rc
endef

.PHONY: help install lab app test test-unit test-notebooks test-gpu strip git-filter clean distclean

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) $(PIP_ARGS) -e '.[dev]'
	@touch $@

install: $(STAMP)

# nbstripout as a git filter: outputs are stripped when notebooks are staged, except in cells
# tagged keep_output; --keep-count because nbval refuses checked cells without an execution
# count. See README, "Working on the notebooks".
# Not in CI, where nothing is committed.
git-filter: $(STAMP)
	@if [ -z "$${CI:-}" ] && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		$(BIN)/nbstripout --install --attributes .gitattributes; \
		git config filter.nbstripout.clean "$(abspath $(PY)) -m nbstripout --keep-count"; \
	fi

# Jupyter refuses to start as root (containers, CI machines) unless told to.
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP) git-filter
	@mkdir -p notebooks
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(AS_ROOT) $(LAB_ARGS)

# Voila runs the notebook and shows its outputs and widgets without the code cells.
app: $(STAMP)
	$(BIN)/voila notebooks/05_explorer.ipynb $(APP_ARGS)

test: test-unit test-notebooks

# scripts/install_browser.sh (when present) installs Debian's Chromium for tests/test_browser.py;
# it never fails the build: where it cannot, the browser test skips itself and says why.
test-unit: $(STAMP) git-filter
	@if [ -f scripts/install_browser.sh ]; then bash scripts/install_browser.sh; fi
	@rc=0; $(TEST_ENV) $(PYTEST) tests --durations=10 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: tests/ collected no test - that is an error"; fi; \
	exit $$rc

test-notebooks: $(STAMP)
ifeq ($(NOTEBOOKS),)
	@echo "make: no notebooks/*.ipynb yet - notebook tests skipped"
else
	$(TEST_ENV) $(PYTEST) $(NBVAL) $(NOTEBOOKS)
endif

test-gpu: $(STAMP)
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
		'make test-gpu: torch ' + torch.__version__ + ' sees no CUDA device')"
	@$(call pytest_may_be_empty,$(GPU_ENV) $(TEST_ENV) $(PYTEST) tests -m gpu $(PYTEST_ARGS),gpu tests)
ifeq ($(NOTEBOOKS),)
	@echo "make: no notebooks/*.ipynb yet - notebook tests skipped"
else
	$(GPU_ENV) $(TEST_ENV) $(PYTEST) $(NBVAL) $(NOTEBOOKS)
endif

strip: $(STAMP)
ifeq ($(NOTEBOOKS),)
	@echo "make: no notebooks/*.ipynb to strip"
else
	$(BIN)/nbstripout --keep-count $(NOTEBOOKS) $(STUDENT_NOTEBOOKS)
endif

clean:
	rm -rf build dist .pytest_cache *.egg-info $(STAMP)
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) \
		-type d -prune -exec rm -rf {} +

distclean: clean
	@if [ -x $(BIN)/nbstripout ] && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		$(BIN)/nbstripout --uninstall; \
	fi
	rm -rf $(VENV)
