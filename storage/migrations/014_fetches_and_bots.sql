-- The outbox sweeper's scan for files never fetched (a host that died while
-- fetching): only such rows are in the index, so it stays small.
CREATE INDEX idx_message_attachments_unfetched ON message_attachments (created_at)
  WHERE provider_file_id IS NOT NULL AND stored_at IS NULL AND error IS NULL;

-- A Telegram bot delivers its updates to one integration: two (in one org
-- or two) would take each other's updates.
CREATE UNIQUE INDEX uq_integrations_telegram_bot ON integrations ((config->>'bot_id'))
  WHERE type = 'telegram';
