# jaxlab: `make reproduce` and `make test` do all set-up themselves (a .venv from requirements/lock.txt).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PAPER  ?=
PYTEST_WORKERS ?= 2
# tests compile far more than they run: `make test` turns most XLA optimisations off (tests/conftest.py);
# TEST_XLA=optimized keeps them on
TEST_XLA ?= fast

.PHONY: venv reproduce test test-slow bench full report clean

$(STAMP): requirements/lock.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==26.3 setuptools==84.2.1 wheel==0.48.0
	$(PY) -m pip install --quiet --no-deps -r requirements/lock.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

reproduce: $(STAMP)
	$(PY) -m jaxlab.reproduce --suite=quick --workdir=results/quick

test: $(STAMP)
	JAXLAB_TEST_XLA=$(TEST_XLA) $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal -m slow --durations=15

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b --size=full || exit 1; done

full: $(STAMP)
	@test -n "$(PAPER)" || (echo "usage: make full PAPER=<name>"; exit 2)
	$(PY) -m jaxlab.reproduce --suite=full --only=$(PAPER) --workdir=results/full

report: $(STAMP)
	$(PY) -m jaxlab.core.report --workdir=results/quick

clean:
	rm -rf $(VENV) results/quick build *.egg-info
