-- amqp.publish()'s rows that need no commit-time trigger event: a transaction's
-- rows after the first one that armed the commit hook, and strict rows. They are
-- rows of amqp.outbox (a child table: every SELECT, UPDATE and DELETE on
-- amqp.outbox sees them) without the outbox's trigger, whose WHEN clause
-- PostgreSQL reads back from its stored form at every INSERT statement: about
-- half the cost of a one-row INSERT (see README, AMQP Performance). Ids come
-- from amqp.outbox_id_seq, so they are unique across both tables.
CREATE TABLE amqp._outbox_rest () INHERITS (amqp.outbox);
ALTER TABLE amqp._outbox_rest ADD PRIMARY KEY (id);
SELECT pg_catalog.pg_extension_config_dump('amqp._outbox_rest', '');
COMMENT ON TABLE amqp._outbox_rest IS
'Internal: rows of amqp.outbox (read them there) that amqp.publish() writes without a commit-time trigger event: a transaction''s messages after its first, and strict ones.';
