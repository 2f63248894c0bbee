# pg_message_queue: PGXS build and install, plus the developer targets.
#   make run     private PostgreSQL (+ RabbitMQ) under .run/ with the extension
#   make test    install what is missing, lint, run every test
#   make soak    load run with an audit (SOAK_ARGS="--minutes 2"; not part of make test)
#   make install | lint | bench | bench-pgq | bench-events | stop | clean

MAIN_EXT    = pg_message_queue
# PGXS installs both control files; the PgQ companion (schema pgq) requires the core.
EXTENSION   = $(MAIN_EXT) pg_message_queue_pgq
EXT_VERSION:= $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" pg_message_queue.control)
PG_MAJOR    = 15
PG_CONFIG  ?= $(firstword $(wildcard /usr/lib/postgresql/$(PG_MAJOR)/bin/pg_config) pg_config)
# Where the Python package lives, one folder per version (see docs/architecture.md).
PYLIBDIR   ?= /usr/local/lib/$(MAIN_EXT)
SERVER_PY  ?= /usr/bin/python3
# The install script and one upgrade script per earlier release (sql/releases.json),
# built from sql/head.sql, sql/incremental/ (run once) and sql/idempotent/ (re-run).
BUILD_SQL   = python3 tools/build_sql.py --extension $(MAIN_EXT) --version $(EXT_VERSION) \
              --libdir $(PYLIBDIR)/$(EXT_VERSION) --parts sql --out build
CORE_SCRIPTS = $(addprefix build/,$(shell $(BUILD_SQL) --list))
# The PgQ companion: same package and version, its own parts and migration record.
PGQ_EXT     = pg_message_queue_pgq
BUILD_PGQ   = python3 tools/build_sql.py --extension $(PGQ_EXT) --version $(EXT_VERSION) \
              --libdir $(PYLIBDIR)/$(EXT_VERSION) --parts sql/pgq --out build \
              --migration-table pgq._pg_mq_migration
PGQ_SCRIPTS = $(addprefix build/,$(shell $(BUILD_PGQ) --list))
DATA_built  = $(CORE_SCRIPTS) $(PGQ_SCRIPTS)
EXTRA_CLEAN = build
SQL_PARTS   = sql/head.sql sql/releases.json $(wildcard sql/incremental/*.sql sql/idempotent/*.sql)

SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV        = .venv
PY          = $(VENV)/bin/python
# pg_config and PGXS come with Debian's postgresql-client; nothing here is compiled.
# Real PgQ 3 and its ticker daemon pgqd are the reference the pgq companion is
# tested and benchmarked against (tests/test_pgq_*.py, tools/bench_pgq.py).
APT_PKGS    = postgresql-$(PG_MAJOR) postgresql-client-$(PG_MAJOR) postgresql-plpython3-$(PG_MAJOR) \
              postgresql-$(PG_MAJOR)-pgq3 pgqd rabbitmq-server python3-pip python3-venv make

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
all install:
	@echo "PostgreSQL $(PG_MAJOR)'s pg_config/PGXS are missing: run 'make deps' first." >&2; exit 1
endif

.PHONY: deps venv install-python install-prior run stop test lint bench install-peers bench-pgq bench-events bench-read bench-xmin unit soak

$(CORE_SCRIPTS) &: tools/build_sql.py $(SQL_PARTS) pg_message_queue.control
	$(BUILD_SQL)

PGQ_PARTS   = sql/pgq/head.sql $(wildcard sql/pgq/incremental/*.sql sql/pgq/idempotent/*.sql)
$(PGQ_SCRIPTS) &: tools/build_sql.py $(PGQ_PARTS) $(PGQ_EXT).control
	$(BUILD_PGQ)

# Earlier releases' install scripts and Python packages, from git history, so the
# upgrade tests can install a release and update it (never the control file). The
# original pg_message_queue 0.2.1 is a test fixture of its schema (tests/fixtures/).
install-prior:
	@python3 tools/releases.py $(MAIN_EXT) | \
	while read v c fixture; do \
	    if [ "$$c" = "-" ]; then \
	        $(SUDO) install -m 644 $$fixture $(DESTDIR)$(datadir)/extension/$(MAIN_EXT)--$$v.sql || exit 1; \
	        if [ -f $${fixture%.sql}.control ]; then \
	            $(SUDO) install -m 644 $${fixture%.sql}.control $(DESTDIR)$(datadir)/extension/ || exit 1; fi; \
	        continue; \
	    fi; \
	    d=build/prior/$$v; rm -rf $$d; mkdir -p $$d; \
	    git archive $$c | tar -x -C $$d || { echo "install-prior: commit $$c of release $$v is not in this clone's history" >&2; exit 1; }; \
	    $(MAKE) --no-print-directory -s -C $$d build/$(MAIN_EXT)--$$v.sql PYLIBDIR=$(PYLIBDIR) && \
	    $(SUDO) $(MAKE) --no-print-directory -s -C $$d install-python PYLIBDIR=$(PYLIBDIR) && \
	    $(SUDO) install -m 644 $$d/build/$(MAIN_EXT)--$$v.sql $(DESTDIR)$(datadir)/extension/ || exit 1; \
	done

# The package and its pinned server-side dependencies, for the server's Python.
install: install-python
install-python:
	$(SUDO) rm -rf $(PYLIBDIR)/$(EXT_VERSION).new
	$(SUDO) mkdir -p $(PYLIBDIR)/$(EXT_VERSION).new
	$(SUDO) $(SERVER_PY) -m pip install --quiet --no-deps --no-compile --disable-pip-version-check \
	    --target $(PYLIBDIR)/$(EXT_VERSION).new -r requirements-server.txt
	$(SUDO) cp -r plpython/$(MAIN_EXT) $(PYLIBDIR)/$(EXT_VERSION).new/
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
	@$(MAKE) --no-print-directory install-prior
	@$(MAKE) --no-print-directory lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	@$(SUDO) $(MAKE) --no-print-directory install-peers
	$(PY) tools/bench.py $(BENCH_ARGS)
	$(PY) tools/bench_pgq.py $(BENCH_PGQ_ARGS)
	$(PY) tools/bench_events.py $(BENCH_EVENTS_ARGS)

# pgmq 1.5.1 (plain SQL, tools/peers/pgmq: PostgreSQL License), a peer measured by make bench.
install-peers:
	install -m 644 tools/peers/pgmq/pgmq.control tools/peers/pgmq/pgmq--1.5.1.sql \
		"$$($(PG_CONFIG) --sharedir)/extension/"

# The pgq companion next to real PgQ 3 (BENCH_PGQ_ARGS="--help" lists the options).
bench-pgq: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	$(PY) tools/bench_pgq.py $(BENCH_PGQ_ARGS)

# Change events only: BENCH_EVENTS_ARGS="--rounds 5 --explain"
bench-events: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	$(PY) tools/bench_events.py $(BENCH_EVENTS_ARGS)

# Load run with an audit (not part of make test): SOAK_ARGS="--minutes 2"
soak: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	$(PY) tools/soak.py $(SOAK_ARGS)

bench-read: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	$(PY) tools/read_latency.py $(BENCH_ARGS)

bench-xmin: deps
	@$(MAKE) --no-print-directory all
	@$(SUDO) $(MAKE) --no-print-directory install
	$(PY) tools/xmin_hold.py $(BENCH_ARGS)
