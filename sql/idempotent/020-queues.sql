-- Queue administration. SECURITY DEFINER so that a role granted EXECUTE (never
-- PUBLIC; see grants.sql) can manage queues without owning the tables.

-- Create a queue for payloads of any type; returns its catalog row.
CREATE OR REPLACE FUNCTION pg_mq_create_queue(in_channel text, in_payload_type text)
RETURNS @extschema@.pg_mq_config_catalog
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.queues.create_queue(in_channel, in_payload_type)
$python$;
COMMENT ON FUNCTION pg_mq_create_queue(text, text) IS
'Create queue in_channel (table pg_mq_queue_<channel>, NOTIFY "<channel>" on insert) holding payloads of type in_payload_type; returns its catalog row.';

-- The original's signature: the payload type as a regtype ('text'::regtype, or a
-- regtype column). A quoted literal still goes to the text form above, which
-- names an unknown type in its error instead of failing in regtype's input.
CREATE OR REPLACE FUNCTION pg_mq_create_queue(in_channel text, in_payload_type regtype)
RETURNS @extschema@.pg_mq_config_catalog
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.queues.create_queue(in_channel, in_payload_type)
$python$;
COMMENT ON FUNCTION pg_mq_create_queue(text, regtype) IS
'Create queue in_channel for payloads of type in_payload_type given as a regtype (the original''s signature); as pg_mq_create_queue(text, text).';

-- Drop a queue; one with undelivered messages needs force => true.
CREATE OR REPLACE FUNCTION pg_mq_drop_queue(in_channel text, force boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.queues.drop_queue(in_channel, force)
$python$;
COMMENT ON FUNCTION pg_mq_drop_queue(text, boolean) IS
'Drop queue in_channel with its table. Refuses (55006) while undelivered messages remain unless force => true.';

-- Delete all messages of a queue; returns how many.
CREATE OR REPLACE FUNCTION pg_mq_purge_queue(in_channel text)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.queues.purge_queue(in_channel)
$python$;
COMMENT ON FUNCTION pg_mq_purge_queue(text) IS
'Delete every message (delivered or not) of queue in_channel; returns the number deleted.';

-- Recreate the notify triggers of all queues (after a restore); returns how many.
CREATE OR REPLACE FUNCTION pg_mq_rebuild_triggers()
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.queues.rebuild_triggers()
$python$;
COMMENT ON FUNCTION pg_mq_rebuild_triggers() IS
'Recreate the NOTIFY trigger of every queue in the catalog (run after a restore); returns how many were rebuilt.';

-- The catalog's row trigger: a change to what a queue's generated send
-- functions were built from rebuilds them, and a deleted or renamed channel
-- loses them, in the same transaction (see queues.catalog_changed). It replaces
-- a check of the catalog row in every send (README Benchmark).
CREATE OR REPLACE FUNCTION _pg_mq_catalog_changed()
RETURNS trigger
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
pgmq.queues.catalog_changed(TD["old"], TD["new"])
$python$;
COMMENT ON FUNCTION _pg_mq_catalog_changed() IS
'Internal: trigger of pg_mq_config_catalog keeping the generated send functions in step with its rows.';

CREATE OR REPLACE TRIGGER pg_mq_catalog_changed
AFTER UPDATE OF channel, table_name, payload_type, settings OR DELETE ON pg_mq_config_catalog
FOR EACH ROW EXECUTE FUNCTION _pg_mq_catalog_changed();

-- Let a role send to ('send'), receive from ('receive') or both ('all').
CREATE OR REPLACE FUNCTION pg_mq_grant(in_channel text, in_role name, in_privilege text DEFAULT 'all')
RETURNS boolean
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.grants.grant(in_channel, in_role, in_privilege)
$python$;
COMMENT ON FUNCTION pg_mq_grant(text, name, text) IS
'Grant in_role the table privileges to send (''send''), receive (''receive'') or both (''all'') on queue in_channel.';

-- Take back what pg_mq_grant gave.
CREATE OR REPLACE FUNCTION pg_mq_revoke(in_channel text, in_role name, in_privilege text DEFAULT 'all')
RETURNS boolean
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.grants.revoke(in_channel, in_role, in_privilege)
$python$;
COMMENT ON FUNCTION pg_mq_revoke(text, name, text) IS
'Revoke from in_role the privileges pg_mq_grant gave on queue in_channel (''send'', ''receive'' or ''all'').';
