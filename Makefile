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

.PHONY: test lint bench deps system-deps client-deps client-test dev dev-prod e2e docker-check run-api run-worker clean

# The whole app at http://localhost:3050 (see stack/__main__.py); Ctrl-C stops it.
dev: deps client-deps
	$(PYTHON) -m stack dev

# The same with the client's production build instead of the dev server.
dev-prod: deps client-deps
	$(PYTHON) -m stack dev --prod-client

# The client's build is served by a real nginx in tests/test_client_nginx.py,
# so the client goes first; the browser test last, against both variants of
# the local stack (each started fresh and stopped by scripts/e2e.sh).
test: lint client-test
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

client-deps: $(CLIENT_INSTALLED)

client-test: $(CLIENT_INSTALLED)
	cd client && ../$(WITH_NODE) npm run lint
	cd client && ../$(WITH_NODE) npm test
	cd client && ../$(WITH_NODE) npm run build

# npm ci from the committed lockfile, again only when it changes.
$(CLIENT_INSTALLED): client/package.json client/package-lock.json
	cd client && ../$(WITH_NODE) npm ci --no-audit --no-fund
	touch $@

bench: deps
	$(PYTHON) bench/bench.py

# The containers end to end (scripts/docker-check.sh); needs a Docker engine.
docker-check: deps client-deps
	scripts/ensure-docker.sh
	scripts/docker-check.sh

deps: system-deps $(INSTALLED)

system-deps:
	@scripts/ensure-system-packages.sh test

# Reinstalled only when a requirements file changes.
$(INSTALLED): requirements-dev.txt server/requirements.txt worker/requirements.txt
	@scripts/ensure-system-packages.sh python
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Run one service by hand against your own Postgres and Redis (see README).
run-api: deps
	cd server && ../$(PYTHON) -m gunicorn --config gunicorn.conf.py

run-worker: deps
	cd worker && ../$(PYTHON) -m fibworker

clean:
	rm -rf $(VENV) .work .pytest_cache .mypy_cache .ruff_cache .hypothesis client/node_modules client/dist
