-- 1.0.0: what the AMQP commit hook and publish() need besides the 0.1.0 tables.

-- Probe rows for the commit hook: inserted and rolled back at once, so this table
-- stays empty. Its trigger has the outbox trigger's name, so every SET CONSTRAINTS
-- (ALL, or by name) puts both in the same mode; amqp._outbox_on_commit() (see
-- idempotent/060-amqp.sql) tells a commit from SET CONSTRAINTS ... IMMEDIATE by it.
CREATE UNLOGGED TABLE amqp._commit_probe (
    id bigint
);
COMMENT ON TABLE amqp._commit_probe IS
'Internal: lets amqp._outbox_on_commit() tell a commit from SET CONSTRAINTS ... IMMEDIATE. Always empty.';

CREATE CONSTRAINT TRIGGER outbox_on_commit
AFTER INSERT ON amqp._commit_probe
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
EXECUTE FUNCTION amqp._outbox_on_commit();

-- publish()'s per-session cache of the broker's flags (see there). Unlogged: its
-- value is per session (currval) and never needs to survive anything.
CREATE UNLOGGED SEQUENCE amqp._broker_flags MINVALUE 0;  -- noqa: PRS
COMMENT ON SEQUENCE amqp._broker_flags IS
'Internal: amqp.publish() keeps the flags of the broker it last published to in this session''s currval.';
