# Rebound — one entry point for newcomers, CI and operators. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UNITS ?= 2000

.DEFAULT_GOAL := help
.PHONY: help install up down status browser netfault demo run test test-faults soak lint bench bench-connectors bench-light bench-full test-docker test-unit schemas asyncapi clean-state manifests

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install Rebound with its pinned dependencies

$(STAMP): pyproject.toml contracts/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "rebound: Python 3.11+ is required (found $$($(PYTHON) --version 2>&1))" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./contracts -e '.[dev]'
	@touch $@

up: install ## start Kafka and PostgreSQL (local, loopback), create topics, migrate; KAFKA_BROKERS=3 for a three-node Kafka
	deploy/scripts/kafka.sh up
	deploy/scripts/postgres.sh up
	$(BIN)/rebound topics
	$(BIN)/rebound migrate

down: ## stop Kafka and PostgreSQL
	deploy/scripts/kafka.sh down
	deploy/scripts/postgres.sh down

status: ## is the local infrastructure running?
	-deploy/scripts/kafka.sh status
	-deploy/scripts/postgres.sh status

demo: up ## run every service, simulate a return wave, print the summary and the guarantee check
	$(BIN)/rebound demo --units $(UNITS)

run: up ## every service and the connectors in the foreground, their log lines behind their names, until Ctrl-C (REPLICAS=N each)
	$(BIN)/rebound run-all --replicas $${REPLICAS:-1}

browser: ## find a headless Chromium for the HTML report test, or install Debian's chromium package
	deploy/scripts/chromium.sh

netfault: ## check what the network-partition scenarios need (root, cgroup v2), installing Debian's nftables if nft is missing
	deploy/scripts/netfault.sh

lint: install ## ruff (lint and format check) and mypy over services, contracts, tests and bench (part of make test)
	$(BIN)/ruff check services contracts tests bench
	$(BIN)/ruff format --check services contracts tests bench
	$(BIN)/mypy

test: up browser netfault lint ## the lint, then every test (unit, integration, end-to-end, fault scenarios) against the real Kafka and PostgreSQL
	$(BIN)/pytest

test-faults: up netfault ## the fault scenarios alone, short profile (kill -9, rebalances, broker and database restarts)
	$(BIN)/pytest tests/faults -s

soak: up netfault ## the fault scenarios at full size (20,000 units, 12 kills, 30 s outage), ROUNDS times (default 1)
	for round in $$(seq $${ROUNDS:-1}); do REBOUND_FAULT_PROFILE=full $(BIN)/pytest tests/faults -s || exit 1; done

bench: up ## benchmark: the bare-loop ceilings (one hop, three hops), inspection -> adjustment at 100k units, whole waves of 10k and 100k (1 and 2 replicas), latency at half load beside the bare loop's, the connectors on the four stand-ins, the targets met or not
	$(BIN)/python -m bench

bench-connectors: up ## only the connectors against the four marketplace stand-ins (about 2 minutes)
	$(BIN)/python -m bench --connectors

bench-light: up ## only the light-load step: inspections one by one at 10, 50 and 100 units/s, with the CPU each process uses, beside the three-hop and one-hop bare loops at each rate, after 90 s of warm-up (about 10 minutes)
	$(BIN)/python -m bench --light-load

bench-full: up ## the benchmark plus a 1,000,000-unit run
	$(BIN)/python -m bench --full

test-docker: install browser ## the same tests but the fault scenarios and the SASL listener's, against throwaway containers (needs Docker)
	REBOUND_TESTCONTAINERS=1 REBOUND_TEST_NO_SASL_LISTENER=1 $(BIN)/pytest --ignore=tests/faults

test-unit: install ## unit tests only (no infrastructure)
	$(BIN)/pytest tests/unit contracts/tests

schemas: install ## regenerate contracts/rebound_contracts/schemas from the models
	$(BIN)/python -m rebound_contracts.schema --write

asyncapi: install ## regenerate contracts/asyncapi.yaml (AsyncAPI 3.0) from the topic registry
	$(BIN)/python -m rebound.codegen.asyncapi

manifests: install ## regenerate deploy/k8s/topics (Strimzi KafkaTopics) from the topic registry
	$(BIN)/python -m rebound.codegen.manifests

clean-state: down ## delete local Kafka and PostgreSQL data (keeps the downloaded jars), the three-broker scenario's cluster too
	deploy/scripts/kafka.sh wipe
	KAFKA_STATE="$${REBOUND_STATE:-$(CURDIR)/.state}/kafka-three" KAFKA_BROKERS=3 deploy/scripts/kafka.sh wipe
	deploy/scripts/postgres.sh wipe
