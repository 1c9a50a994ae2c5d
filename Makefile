# Two commands for a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 3

# Exact versions come from the lock files; pyproject.toml keeps the ranges
# and the dependency groups they are compiled from (`make lock`).
LOCK := requirements/lock.txt
DEV_LOCK := requirements/dev.txt

.PHONY: install install-app run test typecheck audit lock compose-test nginx-conf lint cluster bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# What runs the app, nothing more (`make run`).
$(VENV)/.installed-app: pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

# The app and every dependency group: tests, ruff, mypy, pip-audit (the rest).
$(VENV)/.installed: pyproject.toml $(LOCK) $(DEV_LOCK) | $(PY)
	$(PY) -m pip install --quiet -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@ $(VENV)/.installed-app

install-app: $(VENV)/.installed-app

install: $(VENV)/.installed

run: install-app
	$(PY) manage.py migrate --noinput
	@echo
	@echo "  Chat is at http://$(HOST):$(PORT)/  (SQLite, in-memory channel layer)"
	@echo "  Create an admin for /admin/ with:  $(PY) manage.py createsuperuser"
	@echo
	$(PY) manage.py runserver $(HOST):$(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# docker-compose.yml for real, three replicas behind nginx (tests/compose/):
# needs Docker (starts dockerd when none runs) and a few minutes; not in `make test`.
compose-test: install
	CHAT_COMPOSE_TEST=1 $(PY) -m pytest tests/compose -v -s $(PYTEST_ARGS)

# deploy/nginx.conf from deploy/nginx.py (the cluster command's config comes from there too).
nginx-conf: install
	$(PY) -m deploy.nginx

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy with django-stubs; [tool.mypy] in pyproject.toml says how strict, per module.
typecheck: install
	$(VENV)/bin/mypy

# Known vulnerabilities in the pinned versions (.ci/audit.py: a database
# out of reach is a note, not a failure).
audit: install
	$(PY) .ci/audit.py $(LOCK) $(DEV_LOCK)

# Recompile the lock files from pyproject.toml with uv (the `lock` group),
# keeping the current pins where they still fit; `make lock LOCK_ARGS=--upgrade`
# takes the newest versions the ranges allow.
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command "make lock" --quiet $(LOCK_ARGS)
lock: | $(PY)
	$(PY) -m pip install --quiet --group lock
	$(UV_COMPILE) -o $(LOCK)
	$(UV_COMPILE) --group dev -c $(LOCK) -o $(DEV_LOCK)

cluster: install
	$(PY) manage.py cluster --workers $(WORKERS)

# The side-by-side load (Socket.IO, the Channels tutorial, this project), then
# a reconnect storm on one worker; docs/performance.md has the other loads.
bench: install
	WORKERS=2 CLIENTS=200 SENDERS=10 RATE=5 DURATION=8 ../shared/bench/compare.sh
	MODE=connect WORKERS=1 CLIENTS=2000 ../shared/bench/compare.sh sio project

clean:
	rm -rf $(VENV) staticfiles db.sqlite3* test-*.sqlite3*
