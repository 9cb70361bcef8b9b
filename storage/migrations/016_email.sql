-- Email threading finds a conversation by the Message-IDs a message names
-- (In-Reply-To, References) among the messages of the mailbox; only email
-- messages are indexed (inbound: metadata.data.email; ours once sent:
-- metadata.email), so other channels' inserts pay nothing for it.
CREATE INDEX idx_messages_email_id ON messages (external_id)
  WHERE metadata ? 'email' OR metadata->'data' ? 'email';

-- One mailbox folder feeds one integration: two would import every message twice.
CREATE UNIQUE INDEX uq_integrations_email_mailbox
  ON integrations (lower(config->'imap'->>'host'), (config->'imap'->>'port'),
                   lower(config->'imap'->>'username'), (config->'imap'->>'folder'))
  WHERE type = 'email';
