# make demo: set up (once) and run the main job; make test: set up and run the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.skrobust-installed
# The shared data root beside the checkout, when there is one (tests, examples, benchmarks).
SHARED_DATA := $(abspath ../shared/data)
export SKROBUST_DATA ?= $(if $(wildcard $(SHARED_DATA)/mnist),$(SHARED_DATA),)
export MPLBACKEND ?= Agg

.PHONY: setup demo test docs bench device-prep clean

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

# what benchmarks/device_check.sh needs on a lent GPU machine (no skorch, torchattacks or
# ../shared there): their wheels and the MNIST files, in .device/ (carry it)
device-prep:
	mkdir -p .device/whl .device/data
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	    -d .device/whl "skorch==1.4.0" "torchattacks==3.5.1"
	rm -rf .device/data/mnist
	if [ -n "$(SKROBUST_DATA)" ]; then cp -r "$(SKROBUST_DATA)/mnist" .device/data/; fi

clean:
	rm -rf $(VENV) docs/_build docs/generated .pytest_cache
