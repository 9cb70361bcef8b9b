-- Edits (Telegram's edited_message, and any channel that edits): the
-- original message stays as it came; each edit is a revision beside it.
-- A redelivered edit (same message, time and text) is one revision.
CREATE TABLE message_revisions (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  message_id UUID NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  content TEXT NOT NULL,
  metadata JSONB NOT NULL DEFAULT '{}',
  edited_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX idx_message_revisions_once
  ON message_revisions (message_id, edited_at, md5(content));
ALTER TABLE message_revisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_revisions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON message_revisions USING (organization_id = bidi_org())
  WITH CHECK (organization_id = bidi_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON message_revisions TO bidi_app;

-- The latest edit's time, so a history page shows "edited" without a join.
ALTER TABLE messages ADD COLUMN edited_at TIMESTAMP;

-- A conversation we may no longer write to (the user blocked the bot, left
-- the group): sends fail at once with a clear code instead of retrying.
ALTER TABLE chats ADD COLUMN unreachable_reason TEXT;
ALTER TABLE chats ADD COLUMN unreachable_at TIMESTAMP;
