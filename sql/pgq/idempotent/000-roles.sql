-- PgQ's roles, cluster-wide: made when missing (another database, or a concurrent
-- install, may have made them first), never dropped by DROP EXTENSION.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pgq_reader', 'pgq_writer', 'pgq_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                IF r = 'pgq_admin' THEN
                    CREATE ROLE pgq_admin IN ROLE pgq_reader, pgq_writer;
                ELSE
                    EXECUTE pg_catalog.format('CREATE ROLE %I', r);
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- made meanwhile by a concurrent install
            END;
        END IF;
    END LOOP;
END
$roles$;
