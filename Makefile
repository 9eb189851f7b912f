# segscan: `make demo` runs the founding case in the local lab, `make test` the
# whole suite.  Both install what they need on a fresh Debian machine (as root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT := out/demo
# checkov pins an older botocore than aiobotocore needs, so it lives apart.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml deploy/debian-packages.txt
	deploy/install-system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	deploy/lab/demo.sh $(DEMO_OUT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==3.3.30'

test: lint $(CHECKOV)
	PATH="$(CURDIR)/$(BIN):$$PATH" SEGSCAN_CHECKOV="$(CURDIR)/$(CHECKOV)" \
		$(BIN)/pytest

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) out .pytest_cache .mypy_cache .ruff_cache
