-- 1.0.0: a claim that locked fewer messages than asked for (others hold its first
-- candidates) runs a second statement for the rest, past what they hold. The
-- Python halves that build the claims' statements take in_beyond for it; their
-- earlier forms go, and the re-run part creates the new ones.
DROP FUNCTION IF EXISTS _pg_mq_get_sql(text, integer, boolean);
DROP FUNCTION IF EXISTS _pg_mq_pop_sql(text, integer, boolean);
DROP FUNCTION IF EXISTS _pg_mq_read_sql(text, integer, interval, interval, boolean);
