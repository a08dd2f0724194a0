# cssr-deploy: `make demo` shows it working, `make test` proves it. Both create .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_BIN := tools/lint/node_modules/.bin/tekton-lint
# The upstream CRD schemas the tests validate against: pinned Go modules (crds/go.mod), fetched by
# `make crds` into a git-ignored cache.
CRDS := .cache/crds/.stamp
export CSSR_CRD_DIR ?= $(abspath .cache/crds)

.PHONY: demo test lint unit deps venv crds bench clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[sim,dev]'
	touch $@

venv: $(STAMP)

$(LINT_BIN): tools/lint/package.json tools/lint/package-lock.json
	npm ci --prefix tools/lint --no-audit --no-fund --loglevel=error
	touch $@

$(CRDS): crds/go.mod crds/go.sum scripts/fetch-crds
	scripts/fetch-crds

crds: $(CRDS)

# System tools first: the CRD fetch needs Go.
deps: $(STAMP) $(LINT_BIN)
	scripts/install-system-deps
	$(MAKE) --no-print-directory crds

# The real pipelines/cssr-deploy.yaml against the simulated OpenShift, with real buildah, registry
# and module builds where present (stand-ins, named in the output, where not). Needs root: steps get
# their volumes at pod paths in a private mount namespace.
demo: $(STAMP)
	$(BIN)/python -m cssr_tasks.sim.demo --out out

# The gates (ruff, mypy, yamllint, tekton-lint, schemas, cross-references) are tests in tests/lint,
# each proven to fail on a broken copy of a Task.
lint: $(STAMP) $(LINT_BIN) $(CRDS)
	$(BIN)/python -m pytest -q tests/lint

test: deps
	$(BIN)/python -m pytest

unit: $(STAMP) $(CRDS)
	$(BIN)/python -m pytest -q tests/unit

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# Stops a cluster that `E2E_KEEP=1 make e2e` left running before removing its folder (.cache/e2e,
# about 5 GB with the Go build cache; the next `make e2e` rebuilds it in about 8 minutes).
clean:
	[ ! -x $(BIN)/python ] || $(BIN)/python -m e2e.harness down
	rm -rf $(VENV) tools/lint/node_modules out .cache .hypothesis .pytest_cache .mypy_cache .ruff_cache

# The real-cluster tier (e2e/README.md): etcd and Kubernetes built from pinned Go modules, started
# on this machine (Stage C's node: containerd, kubelet, kube-proxy; scripts/install-e2e-deps installs
# containerd, root only), e2e/tests run against them, out/e2e/report.json written. E2E_KEEP=1 leaves the
# cluster running (admin kubeconfig: out/e2e/kubeconfig); e2e-down stops what it started.
.PHONY: e2e e2e-down
e2e: $(STAMP) $(CRDS)
	scripts/install-e2e-deps
	$(BIN)/python -m e2e.harness e2e

e2e-down:
	$(BIN)/python -m e2e.harness down
