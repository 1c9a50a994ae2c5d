# Two commands for a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 3

.PHONY: install run test compose-test nginx-conf lint cluster bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed

run: install
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

cluster: install
	$(PY) manage.py cluster --workers $(WORKERS)

# The side-by-side load (Socket.IO, the Channels tutorial, this project), then
# a reconnect storm on one worker; docs/performance.md has the other loads.
bench: install
	WORKERS=2 CLIENTS=200 SENDERS=10 RATE=5 DURATION=8 ../shared/bench/compare.sh
	MODE=connect WORKERS=1 CLIENTS=2000 ../shared/bench/compare.sh sio project

clean:
	rm -rf $(VENV) staticfiles db.sqlite3* test-*.sqlite3*
