-- 1.0.0: the original pg_message_queue's result columns and argument types.
-- Every release of the original returned msg_id, sent_at, sent_by, delivered_at
-- (the delivery time), payload from pg_mq_get_msg_*, and took in_num_msgs bigint
-- in pg_mq_get_msg_text; 0.1.0 returned was_delivered boolean in the fourth
-- column and took an integer. The types keep their oids (and so whatever depends
-- on them); the old pg_mq_get_msg_text(name, integer) goes, and the re-run part
-- creates pg_mq_get_msg_text(name, bigint).
ALTER TYPE pg_mq_msg_text RENAME ATTRIBUTE was_delivered TO delivered_at;
ALTER TYPE pg_mq_msg_text ALTER ATTRIBUTE delivered_at TYPE timestamptz;
ALTER TYPE pg_mq_msg_bin RENAME ATTRIBUTE was_delivered TO delivered_at;
ALTER TYPE pg_mq_msg_bin ALTER ATTRIBUTE delivered_at TYPE timestamptz;
DROP FUNCTION IF EXISTS pg_mq_get_msg_text(name, integer);

-- pg_mq_send_message returns the original's pg_mq_base columns first (msg_id,
-- sent_at, sent_by, delivered_at: NULL for a new message), then what this
-- extension adds. The type holds no data, so its attributes are simply re-laid.
ALTER TYPE pg_mq_sent
DROP ATTRIBUTE channel,
DROP ATTRIBUTE visible_at,
DROP ATTRIBUTE deduplicated,
ADD ATTRIBUTE delivered_at timestamptz,
ADD ATTRIBUTE channel text,
ADD ATTRIBUTE visible_at timestamptz,
ADD ATTRIBUTE deduplicated boolean;
