# The README's commands. `make demo` and `make test` each build the venv first when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The example's photo where CI keeps a copy; else demo fetches it (offline: makes a picture of its own).
IMAGE ?= $(wildcard ../shared/data/mug.jpg)
# Only its tritonserver binary is used; its own dependencies would pin tritonclient 2.5x and protobuf 4.
PYTRITON := nvidia-pytriton==0.7.0

.PHONY: install demo test lint clean

# pip prints a line per package it fetches and installs (about a minute, most of it torch): progress.
$(BIN)/resnet-serve: pyproject.toml
	@echo "Installing into $(VENV): pip, then resnet-serve with torch (export), then tritonserver ($(PYTRITON))"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e ".[export,dev]"
	$(BIN)/python -m pip install --progress-bar off --no-deps $(PYTRITON)
	@touch $@

install: $(BIN)/resnet-serve

demo: install
	$(BIN)/resnet-serve demo $(IMAGE)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf build .pytest_cache .ruff_cache
