# Two entry points for a fresh machine (see README): `make demo` and `make test`.
VENV := .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast lint gdal

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[test,flows]'
	touch $@

# Debian's gdal-bin + python3-gdal provide gdal_pansharpen.py, the reference Brovey implementation.
gdal:
	command -v gdal_pansharpen.py >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq gdal-bin python3-gdal)

demo: $(VENV)/.installed
	$(VENV)/bin/pansharp-dist demo

# ruff (lint and format) and mypy, clean on the package; part of `make test` and so of CI.
LINTED := pansharp_dist flows benchmarks tests deploy
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

# The whole suite on two test processes, each test file on one of them (its module fixtures built once).
test: lint gdal
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --durations=30

# The fast tier: every module's tests but the slow ones (real multi-process clusters, CLI runs of networks,
# Prefect deployments, the larger scenes), on two test processes; under 3 minutes on a 2-core machine.
test-fast: $(VENV)/.installed gdal
	$(VENV)/bin/python -m pytest -m "not slow" -n 2
