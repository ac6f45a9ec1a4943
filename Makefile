# Two commands for a newcomer: `make demo` and `make test`. Both set up what they need first,
# idempotently: a virtualenv in .venv, the pip packages, the data and the model, with every
# download cached under ~/.cache/polyrec.

PYTHON ?= python3
VENV ?= .venv
CACHE ?= $(or $(POLYREC_CACHE),$(HOME)/.cache/polyrec)
EXTRAS ?= cpu,use-m3,eval,export,embedded,dev,rocksdb
BIN := $(VENV)/bin
# The venv is reinstalled when pyproject.toml or EXTRAS change.
STAMP := $(VENV)/.installed-$(shell { cat pyproject.toml; echo "$(EXTRAS)"; } | sha1sum | cut -c1-12)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# pip.conf here names a local index folder that may be missing; hide only that warning.
QUIET := 2>&1 | { grep -v '^WARNING: Location' || true; }

export PIP_CACHE_DIR ?= $(CACHE)/pip
export PIP_DISABLE_PIP_VERSION_CHECK = 1

# The default multilingual encoder (see docs/encoder.md); same layout as encoders/artifacts.py.
export POLYREC_CACHE := $(CACHE)
MODEL_DIR := $(CACHE)/models/multilingual-e5-small
ONNX_DIR := $(CACHE)/onnx/multilingual-e5-small
# The export recipe's version (encoders/sidecar.py FORMAT): a new one makes the graphs stale.
ONNX_RECIPE := $(ONNX_DIR)/.recipe-$(shell sed -n 's|^FORMAT = "\(.*\)"|\1|p' encoders/sidecar.py | tr / -)

.PHONY: setup encoder prometheus socat demo lint test faults soak eval clean FORCE

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip $(QUIET)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]' $(QUIET)
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP) encoder
	$(BIN)/polyrec fetch

# Built once into the cache; each file target is written last by its command, only on success.
encoder: $(ONNX_DIR)/model.fp32.json $(ONNX_DIR)/model.int8.json

# Always asked: the command itself reuses a valid build (~1 s) and rewrites the stamp only on a rebuild.
$(MODEL_DIR)/polyrec-build.json: FORCE | $(STAMP)
	$(BIN)/polyrec model build --out $(MODEL_DIR)

$(ONNX_RECIPE):
	@mkdir -p $(@D) && touch $@

$(ONNX_DIR)/model.%.json: $(MODEL_DIR)/polyrec-build.json $(ONNX_RECIPE)
	$(BIN)/polyrec export --model $(MODEL_DIR) --out $(ONNX_DIR)/model.$*.onnx $(if $(filter int8,$*),--int8)

FORCE:

demo: setup
	$(BIN)/polyrec demo

eval: setup
	$(BIN)/polyrec eval

# The real Prometheus server that tests/deploy/test_dashboard.py queries (Debian's package; sudo only if not root).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
prometheus:
	@command -v prometheus >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }

# The guards, before any test runs: style and imports (ruff), the layers (import-linter; the contracts
# are in pyproject.toml and drawn in docs/architecture.md), and types in the core package (mypy).
# All three run; any finding fails the target.
lint: $(STAMP)
	@rc=0; \
	echo "ruff check ."; $(BIN)/ruff check . || rc=1; \
	echo "lint-imports"; $(BIN)/lint-imports --no-logo || rc=1; \
	echo "mypy (polyrec/)"; $(BIN)/mypy || rc=1; \
	exit $$rc

test: setup prometheus lint
	$(BIN)/python -m pytest -q

# socat stands between a worker and the broker in the broker-cut fault tests
socat:
	@command -v socat >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends socat; }

# Fault tests kept out of `make test`: reproductions of open reliability holes and long runs
# (docs/operations.md, "Fault tests").
faults: setup socat
	$(BIN)/python -m pytest -q -m faults

# 10 minutes of traffic with faults in the first half; RSS, lag and freshness in the second
soak: setup socat
	$(BIN)/python -m pytest -q -s -m soak

clean:
	rm -rf $(VENV) results
