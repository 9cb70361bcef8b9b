-- Realtime messaging: commit-ordered events, chat routing and unread counts.
--
-- events.seq is assigned when a row is inserted, not when its transaction
-- commits, so two transactions can commit out of seq order. Each event also
-- records the id of the transaction that wrote it (`xid`): every transaction
-- whose id is below the oldest still running one (pg_snapshot_xmin) has
-- finished, so the relay publishes events in (xid, seq) order up to that fence
-- and never has to look back. Per chat, (xid, seq) keeps the order in which
-- the chat actor committed.
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE events ADD COLUMN chat_id UUID;
CREATE INDEX idx_events_xid_seq ON events (xid, seq);
-- Resume by org now goes by (organization_id, xid, seq); every index on this
-- append-hot table costs each event, so the seq-ordered one goes.
DROP INDEX idx_events_org_seq;
CREATE INDEX idx_events_org_xid_seq ON events (organization_id, xid, seq);
CREATE INDEX idx_events_chat_xid_seq ON events (chat_id, xid, seq) WHERE chat_id IS NOT NULL;

-- Where the relay got to; written by the relay only (not the app role).
CREATE TABLE relay_cursors (
  name VARCHAR(100) PRIMARY KEY,
  xid xid8 NOT NULL,
  seq BIGINT NOT NULL,
  updated_at TIMESTAMP DEFAULT NOW()
);

-- Chats know the integration they came through (outbound goes back there)
-- and keep their unread count (the chat actor is the only writer).
ALTER TABLE chats ADD COLUMN integration_id UUID REFERENCES integrations(id) ON DELETE SET NULL;
ALTER TABLE chats ADD COLUMN unread_count INTEGER NOT NULL DEFAULT 0;
-- Every message updates its chat row; with no index on the columns it changes
-- and room left in each page, that update is HOT (no index writes).
ALTER TABLE chats SET (fillfactor = 70);
CREATE INDEX idx_integrations_org ON integrations (organization_id);

-- Outbound idempotency and delivery-status order. A status only moves
-- forward: pending -> sent -> delivered -> read; failed only from pending or sent.
CREATE FUNCTION bidi_status_advances(old_status text, new_status text) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN new_status = 'failed' THEN old_status IN ('pending', 'sent')
    WHEN old_status = 'failed' THEN false
    ELSE array_position(ARRAY['pending', 'sent', 'delivered', 'read'], new_status)
       > array_position(ARRAY['pending', 'sent', 'delivered', 'read'], old_status)
  END $$;
GRANT EXECUTE ON FUNCTION bidi_status_advances(text, text) TO bidi_app;
