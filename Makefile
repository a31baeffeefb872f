# One command sets up and converges the local cluster; one command runs the whole suite.
PROFILE ?= full
VENV := .venv/bin

.PHONY: up test down setup unit lint bench

up: setup                ## bring up the local cluster and converge every node
	$(VENV)/saltyard cluster up --profile $(PROFILE)

test: setup              ## the whole suite: tests/convergence and the host-level suites at once (scripts/test.sh)
	scripts/test.sh

unit: setup              ## unit tests only (seconds)
	$(VENV)/pytest tests/unit

down: setup              ## remove the local cluster's containers, volumes and network
	$(VENV)/saltyard cluster down

lint: setup
	$(VENV)/ruff check . && $(VENV)/ruff format --check .

bench: setup             ## highstate timings per role and per node (docs/benchmarks.md)
	$(VENV)/python benchmarks/highstate.py --profile $(PROFILE)

setup:
	scripts/host-setup.sh
