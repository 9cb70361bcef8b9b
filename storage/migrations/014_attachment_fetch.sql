-- The outbox sweeper's scan for files never fetched (a host that died while
-- fetching): only such rows are in the index, so it stays small.
CREATE INDEX idx_message_attachments_unfetched ON message_attachments (created_at)
  WHERE provider_file_id IS NOT NULL AND stored_at IS NULL AND error IS NULL;
