# The two commands of the README: `make up` runs Lakou, `make test` runs the whole suite.
# Both create the virtual environment and install on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := tests/interop/node_modules/.installed
# The suite mostly waits on real servers and databases: three pytest-xdist workers cut its time by
# more than half even on two cores. A file's tests stay together on one worker, in order (its
# module-scoped network is built once). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 3

.PHONY: up test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(NPM_STAMP): tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

up: $(STAMP)
	$(BIN)/lakou up

test: $(STAMP) $(NPM_STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) tests/interop/node_modules .pytest_cache
