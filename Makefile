# make demo: set up (once) and run the main job; make test: set up and run the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.skrobust-installed
# The shared data root beside the checkout, when there is one (tests, examples, benchmarks).
SHARED_DATA := $(abspath ../shared/data)
export SKROBUST_DATA ?= $(if $(wildcard $(SHARED_DATA)/mnist),$(SHARED_DATA),)
export MPLBACKEND ?= Agg

.PHONY: setup demo test docs bench clean

setup: $(STAMP)

# torchattacks is the reference the APGD tests compare with, image by image; --no-deps:
# its pin of requests~=2.25 would break Sphinx, and everything else it needs is installed
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,docs]"
	$(PY) -m pip install --quiet --no-deps "torchattacks>=3.4"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/skrobust demo

test: $(STAMP)
	$(PY) -m pytest -n 2 -q --run-slow

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	$(PY) -m pip install --quiet "adversarial-robustness-toolbox>=1.15"
	$(PY) benchmarks/attacks.py

clean:
	rm -rf $(VENV) docs/_build docs/generated .pytest_cache
