# The two commands: `make demo` and `make test`. Both create .venv on first use and reuse it after;
# the install step re-runs only when pyproject.toml or constraints.txt change.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint fmt bench clean install image base up down
.DEFAULT_GOAL := demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aisle demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 --timeout 600 --durations 25 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

fmt: $(STAMP)
	$(BIN)/ruff format src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) aisle-data .pytest_cache .ruff_cache

# ---- the fleet (README "Deploying"): compose.yaml, the image tagged with the package version ----------------
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
# AISLE_BASE=aisle-base:bookworm (after `make base`) builds without a container registry
AISLE_BASE ?= python:3.11-slim-bookworm

image:
	docker build --build-arg BASE=$(AISLE_BASE) --build-arg VERSION=$(VERSION) -t aisle:$(VERSION) .

base:
	deploy/base.sh aisle-base:bookworm

up:
	AISLE_VERSION=$(VERSION) $(COMPOSE) up -d --build

down:
	AISLE_VERSION=$(VERSION) $(COMPOSE) down
