-- The trigger function of every queue table.

-- Statement-level AFTER INSERT trigger on every queue table: one NOTIFY per
-- inserting statement. Arguments: the channel, the msg_id sequence. The payload
-- is the newest msg_id allocated so far (at least every id the statement
-- inserted). PL/pgSQL rather than PL/Python, and no transition table: it runs
-- on every send, and this form costs a third of one with a transition table.
-- No SET clause either (it cost a fifth of the queue table's INSERT, README
-- Benchmark): every name is qualified, the sequence argument too. The call is
-- the condition of an empty IF, not a PERFORM: PL/pgSQL evaluates a condition
-- as a simple expression, where PERFORM starts the executor for a one-row
-- SELECT; that took 9 of the trigger's 16 µs per sending statement (README
-- Benchmark). pg_notify returns void, which is never NULL.
CREATE OR REPLACE FUNCTION pg_mq_notify_trigger()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF pg_catalog.pg_notify(
        TG_ARGV[0], pg_catalog.pg_sequence_last_value(TG_ARGV[1]::pg_catalog.regclass)::pg_catalog.text
    ) IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pg_mq_notify_trigger() IS
'Trigger of every queue table: NOTIFY "<channel>" once per inserting statement, payload = the newest msg_id allocated (covering every id the statement inserted).';
