-- Run first by every install and upgrade script: the record of run-once parts.
-- Each part of sql/incremental/ runs once per database, in name order, and is
-- recorded here; parts of sql/idempotent/ run on every install and upgrade.
CREATE TABLE IF NOT EXISTS pg_mq_migration (
    name text PRIMARY KEY,
    applied_at_version text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    body text NOT NULL
);
COMMENT ON TABLE pg_mq_migration IS
'Run-once parts of the extension scripts applied to this database (name, version, time, text).';

-- Schema amqp is ours (pg_amqp's API). One made by pg_amqp (or by hand) is not
-- taken over: say how to move its brokers across instead.
DO $amqp$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'amqp')
        AND NOT EXISTS (
            SELECT FROM pg_catalog.pg_depend AS d
            JOIN pg_catalog.pg_namespace AS n ON d.objid = n.oid
            JOIN pg_catalog.pg_extension AS e ON d.refobjid = e.oid
            WHERE
                d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                AND d.deptype = 'e' AND n.nspname = 'amqp' AND e.extname = 'pg_message_queue'
        ) THEN
        RAISE EXCEPTION 'pg_message_queue: schema "amqp" already exists (pg_amqp''s, or made by hand)'
            USING ERRCODE = '42P06',
            DETAIL = 'pg_message_queue provides pg_amqp''s API (amqp.broker, amqp.publish, amqp.autonomous_publish, '
            'amqp.exchange_declare, amqp.disconnect) in a schema amqp of its own.',
            HINT = 'Move the brokers across: CREATE TABLE public.pg_amqp_brokers AS SELECT * FROM amqp.broker; '
            'DROP EXTENSION amqp (or DROP SCHEMA amqp CASCADE if pg_amqp was not installed as an extension); '
            'CREATE EXTENSION pg_message_queue CASCADE; '
            'INSERT INTO amqp.broker (broker_id, host, port, vhost, username, password) '
            'SELECT broker_id, host, port, vhost, username, password FROM public.pg_amqp_brokers; '
            'SELECT pg_catalog.setval(''amqp.broker_broker_id_seq'', max(broker_id)) FROM amqp.broker; '
            'DROP TABLE public.pg_amqp_brokers;';
    END IF;
END
$amqp$;
