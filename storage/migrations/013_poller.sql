-- Why an integration stopped working on its own (a polling bot whose token
-- Telegram refused, say), shown on the integration; NULL while it works.
-- Switching it off and on, or changing its mode, clears it.
ALTER TABLE integrations ADD COLUMN error TEXT;
ALTER TABLE integrations ADD COLUMN error_at TIMESTAMP;
-- The pollers' sweep: active Telegram bots in polling mode, across orgs.
CREATE INDEX idx_integrations_polling ON integrations (id)
  WHERE type = 'telegram' AND is_active AND error IS NULL AND config->>'mode' = 'polling';
