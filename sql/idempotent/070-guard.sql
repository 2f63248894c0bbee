-- Queue tables are ordinary tables, not extension members, so that pg_dump keeps
-- them with their messages and grants. DROP EXTENSION would leave them behind,
-- without their defaults and triggers: refuse it while queues exist.

-- Event trigger function: refuse DROP EXTENSION pg_message_queue while queues exist.
CREATE OR REPLACE FUNCTION _pg_mq_guard_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    names text;
BEGIN
    IF current_query() !~* '\mpg_message_queue\M' THEN
        RETURN;
    END IF;
    SELECT count(*), string_agg(quote_literal(c.channel), ', ' ORDER BY c.channel)
    INTO n, names
    FROM @extschema@.pg_mq_config_catalog AS c;
    IF n > 0 THEN
        RAISE EXCEPTION 'pg_message_queue: cannot drop the extension while % queue(s) exist: %', n, left(names, 500)
            USING ERRCODE = '2BP01',
            HINT = 'Drop them first: SELECT pg_mq_drop_queue(channel, force => true) FROM pg_mq_config_catalog; '
            'dropping the extension would leave their tables behind.';
    END IF;
END
$$;
COMMENT ON FUNCTION _pg_mq_guard_drop() IS
'Internal: event trigger refusing DROP EXTENSION pg_message_queue while queues exist.';

DO $guard$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'pg_mq_guard_drop_extension') THEN
        CREATE EVENT TRIGGER pg_mq_guard_drop_extension ON ddl_command_start
        WHEN TAG IN ('DROP EXTENSION')
        EXECUTE FUNCTION _pg_mq_guard_drop();
    END IF;
END
$guard$;
