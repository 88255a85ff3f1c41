# mediaprep: `make demo` shows the tool at work, `make test` proves it. Both set up what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup ffmpeg check test demo bench clean

setup: ffmpeg $(STAMP)

# ffmpeg and ffprobe: use what is on PATH (or MEDIAPREP_FFMPEG/MEDIAPREP_FFPROBE), else install them.
ffmpeg:
	@bash scripts/ensure-ffmpeg.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

check: setup
	$(BIN)/ruff format --check mediaprep tests fixtures benchmarks scripts
	$(BIN)/ruff check mediaprep tests fixtures benchmarks scripts
	$(BIN)/mypy

test: check
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mediaprep-out
