# inferwatch: the two commands are `make run` and `make test`; the rest are their parts.
SHELL := /bin/bash
PYTHON ?= python3
# The locks pin every package with its hashes (`make lock` refreshes them): requirements.lock is
# what the worker runs on (the image installs it alone), requirements-dev.lock adds the tests',
# linters' and lab's packages on top of it. LATEST=1 (`make test-latest`) ignores both and
# takes the newest release of every package, in a venv of its own, so an upgrade is tried
# before it is locked.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
ifeq ($(LATEST),1)
VENV := .venv-latest
else
VENV := .venv
endif
PY := $(VENV)/bin/python
KAFKA := services/kafka/kafka.sh
# goflow2 for the NetFlow/sFlow service test: the release docker-compose.yml pins, built from
# the Go module proxy into .cache/bin
GOFLOW2_VERSION := v2.2.1
GOFLOW2 := .cache/bin/goflow2
RUN_PORT ?= 9092
TEST_PORT ?= 19092
METRICS_PORT ?= 9108

.PHONY: run test test-long test-latest setup lock lab-setup unit integration lint typecheck kafka-fetch \
  goflow2 clean help

help:
	@echo "make run    start a local broker, a worker and endless demo traffic; /metrics on :$(METRICS_PORT)"
	@echo "make test   install what is missing, start the broker, run every test, stop the broker"

$(VENV)/.installed: pyproject.toml $(LOCK) $(DEV_LOCK)
	@command -v $(PYTHON) >/dev/null || { echo "python3 (>= 3.11) is missing" >&2; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is needed" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
ifeq ($(LATEST),1)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev,probe,lab,plot]'
	$(PY) -m pip list --format=freeze > $(VENV)/versions.txt
else
	$(PY) -m pip install -q --require-hashes -r $(LOCK) -r $(DEV_LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
endif
	$(PY) -c 'from detectors.anomaly import compile_kernel; compile_kernel()'
	touch $@

# Resolve both locks from pyproject.toml (for every platform and Python >= 3.11), with hashes.
# Commit them after `make test` passes on them.
# UPGRADE=1 takes the newest versions; without it the pins stay and only what is new is added.
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes $(if $(UPGRADE),--upgrade) \
  --custom-compile-command "make lock"
lock:
	test -x $(VENV)/bin/uv || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(PY) -m pip install -q uv; }
	printf 'pip\nsetuptools>=77\nwheel\n' | $(VENV)/bin/uv pip compile -q $(LOCK_FLAGS) \
	  --extra probe pyproject.toml - -o $(LOCK)
	$(VENV)/bin/uv pip compile -q $(LOCK_FLAGS) --extra dev --extra lab --extra plot -c $(LOCK) \
	  pyproject.toml -o $(DEV_LOCK)

setup: $(VENV)/.installed kafka-fetch

goflow2: $(GOFLOW2)
$(GOFLOW2):
	@command -v go >/dev/null || { echo "go is missing: the goflow2 service test builds goflow2 with it" >&2; exit 1; }
	GOBIN=$(CURDIR)/.cache/bin go install github.com/netsampler/goflow2/v2/cmd/goflow2@$(GOFLOW2_VERSION)

kafka-fetch:
	@$(KAFKA) fetch

# Debian packages of the lab and the alerting tests (softflowd, pmacct, iproute2, openssl,
# prometheus with promtool, prometheus-alertmanager), when missing.
lab-setup:
	@services/debian/install.sh

# With BROKER=HOST:PORT, `make run` uses that broker instead of starting a local one.
run: setup
ifdef BROKER
	@$(PY) -m streams.tools.devrun --broker $(BROKER) --metrics-port $(METRICS_PORT)
else
	@KAFKA_PORT=$(RUN_PORT) $(KAFKA) run $(PY) -m streams.tools.devrun --broker 127.0.0.1:$(RUN_PORT) --metrics-port $(METRICS_PORT)
endif

CODE := $(wildcard streams detectors tests bench lab)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

unit: $(VENV)/.installed
	$(PY) -m pytest -m "not integration" --doctest-modules streams detectors lab tests

integration: setup lab-setup $(GOFLOW2)
	KAFKA_FRESH=1 KAFKA_PORT=$(TEST_PORT) $(KAFKA) run env KAFKA_TEST_BROKER=127.0.0.1:$(TEST_PORT) \
	  $(PY) -m pytest -m integration tests

# Every test against a fresh broker, in two lanes beside each other (tests/run_suite.sh): the
# lab's service tests then the unit tests and doctests, and the other service tests.
test: setup lab-setup $(GOFLOW2) lint typecheck
	KAFKA_FRESH=1 KAFKA_PORT=$(TEST_PORT) $(KAFKA) run env KAFKA_TEST_BROKER=127.0.0.1:$(TEST_PORT) \
	  PY=$(PY) tests/run_suite.sh

# The whole suite on the newest release of every package (not the locks), in .venv-latest: run
# it before `make lock` and on a schedule, so that upgrades are chosen, not suffered.
test-latest:
	$(MAKE) test LATEST=1

# The long opt-in scenarios (about 70 minutes, not in `make test`): ten quiet minutes and a
# 15-minute ramp on a congested lab link, lab link anomalies, an alert storm through a
# five-minute webhook outage.
test-long: setup lab-setup
	KAFKA_FRESH=1 KAFKA_PORT=$(TEST_PORT) $(KAFKA) run env KAFKA_TEST_BROKER=127.0.0.1:$(TEST_PORT) \
	  LONG_LAB=1 LONG_DISPATCH=1 $(PY) -m pytest -s -m integration \
	  -k "quiet or ramp or anomalies or storm" tests

clean:
	rm -rf .venv .venv-latest .cache .pytest_cache .mypy_cache .ruff_cache
