# pg_message_queue: PGXS build and install, plus the developer targets.
#   make run     private PostgreSQL (+ RabbitMQ) under .run/ with the extension
#   make test    install what is missing, lint, run every test
#   make install | lint | bench | stop | clean

EXTENSION   = pg_message_queue
EXT_VERSION:= $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
PG_MAJOR    = 15
PG_CONFIG  ?= $(firstword $(wildcard /usr/lib/postgresql/$(PG_MAJOR)/bin/pg_config) pg_config)
# Where the Python package lives, one folder per version (see DESIGN.md).
PYLIBDIR   ?= /usr/local/lib/$(EXTENSION)
SERVER_PY  ?= /usr/bin/python3
SCRIPT      = build/$(EXTENSION)--$(EXT_VERSION).sql
DATA_built  = $(SCRIPT)
EXTRA_CLEAN = build

# Fixed order: declarations before the functions that use them, grants last.
SQL_PARTS   = sql/catalog.sql sql/queues.sql sql/messages.sql sql/leases.sql sql/upkeep.sql sql/amqp.sql sql/grants.sql

SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV        = .venv
PY          = $(VENV)/bin/python
# pg_config and PGXS come with Debian's postgresql-client; nothing here is compiled.
APT_PKGS    = postgresql-$(PG_MAJOR) postgresql-client-$(PG_MAJOR) postgresql-plpython3-$(PG_MAJOR) \
              rabbitmq-server python3-pip python3-venv make

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
all install:
	@echo "PostgreSQL $(PG_MAJOR)'s pg_config/PGXS are missing: run 'make deps' first." >&2; exit 1
endif

.PHONY: deps venv install-python run stop test lint bench bench-read unit

$(SCRIPT): tools/build_sql.py $(SQL_PARTS) $(EXTENSION).control
	python3 tools/build_sql.py $(EXT_VERSION) $(PYLIBDIR)/$(EXT_VERSION) $@ $(SQL_PARTS)

# The package and its pinned server-side dependencies, for the server's Python.
install: install-python
install-python:
	$(SUDO) rm -rf $(PYLIBDIR)/$(EXT_VERSION).new
	$(SUDO) mkdir -p $(PYLIBDIR)/$(EXT_VERSION).new
	$(SUDO) $(SERVER_PY) -m pip install --quiet --no-deps --no-compile --disable-pip-version-check \
	    --target $(PYLIBDIR)/$(EXT_VERSION).new -r requirements-server.txt
	$(SUDO) cp -r plpython/$(EXTENSION) $(PYLIBDIR)/$(EXT_VERSION).new/
	$(SUDO) find $(PYLIBDIR)/$(EXT_VERSION).new -name __pycache__ -prune -exec rm -rf {} +
	$(SUDO) rm -rf $(PYLIBDIR)/$(EXT_VERSION)
	$(SUDO) mv $(PYLIBDIR)/$(EXT_VERSION).new $(PYLIBDIR)/$(EXT_VERSION)

# Debian packages and the developer virtualenv, only what is missing.
deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "Installing:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@$(MAKE) --no-print-directory venv

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt requirements-server.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements-server.txt
	touch $@

run: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	@$(PY) tools/servers.py start .run

stop:
	@if [ -x $(PY) ]; then $(PY) tools/servers.py stop .run; fi

lint: venv
	$(VENV)/bin/ruff check plpython tests tools
	$(VENV)/bin/ruff format --check plpython tests tools
	$(VENV)/bin/sqlfluff lint sql

unit: venv
	$(PY) -m pytest -q tests/unit

test: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	@$(MAKE) --no-print-directory lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	$(PY) tools/bench.py $(BENCH_ARGS)

bench-read: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	$(PY) tools/read_latency.py $(BENCH_ARGS)
