# PostgreSQL 15 (Debian bookworm) with plpython3u and pg_message_queue installed,
# created in the default database: `docker run` gives a ready server.
#   docker build -t pg_message_queue .
#   docker run -d -p 5432:5432 -e POSTGRES_PASSWORD=secret pg_message_queue
FROM postgres:15-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        postgresql-plpython3-15 postgresql-server-dev-15 python3-pip make \
    && rm -rf /var/lib/apt/lists/*

COPY . /usr/src/pg_message_queue
WORKDIR /usr/src/pg_message_queue
RUN make clean && make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config SUDO= \
    && apt-get purge -y --auto-remove postgresql-server-dev-15 make

# Runs once, when the entrypoint initialises an empty data directory.
RUN printf '%s\n' \
    'CREATE EXTENSION IF NOT EXISTS pg_message_queue CASCADE;' \
    > /docker-entrypoint-initdb.d/10-pg_message_queue.sql
WORKDIR /
