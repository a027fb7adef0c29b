# Everything a fresh machine with Python 3.11 needs: `make run` and `make test` set it all up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint tlpi clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

## run: the default sweep (bench_configs/quick.toml), then its report
run: install
	$(BIN)/iobench run sweep bench_configs/quick.toml
	$(BIN)/iobench report

## test: the whole test suite (real syscalls on small sizes)
test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check iobench tests
	$(BIN)/ruff format --check iobench tests

## tlpi: book scale (TLPI Table 13-1); takes about 20 minutes
tlpi: install
	$(BIN)/iobench run sweep bench_configs/tlpi.toml
	$(BIN)/iobench report

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
