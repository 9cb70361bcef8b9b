-- A chat's person (the member who answers it), and the columns and indexes
-- that let the inbox filter and search its chat list through an index under
-- row-level security.
--
-- The policy on chats (migration 002: organization_id = bidi_org()) already
-- covers every row, new columns included. Under RLS an index serves only
-- LEAKPROOF conditions next to the policy's organization_id (see migration
-- 006), and `metadata->>'...'` and lower() are not leakproof: so the agent
-- (kept in metadata, where the chat actor reads and writes it) and the
-- lower-cased title are stored generated columns, compared with plain `=`
-- and the leakproof text_pattern_ops range operators.
ALTER TABLE chats ADD COLUMN assigned_user_id UUID REFERENCES users(id) ON DELETE SET NULL;
-- Text, as the metadata holds it: a cast here would fail every write of a
-- row whose metadata holds anything else.
ALTER TABLE chats ADD COLUMN assigned_agent_id TEXT
  GENERATED ALWAYS AS (metadata->>'assigned_agent_id') STORED;
ALTER TABLE chats ADD COLUMN title_key TEXT GENERATED ALWAYS AS (lower(title)) STORED;

-- Each serves its filter in the list's order (newest conversation first).
CREATE INDEX idx_chats_assigned_user
  ON chats (organization_id, assigned_user_id, last_message_at DESC NULLS LAST, id);
CREATE INDEX idx_chats_assigned_agent
  ON chats (organization_id, assigned_agent_id, last_message_at DESC NULLS LAST, id);
-- A search matches a title by its start (a prefix range).
CREATE INDEX idx_chats_title_key ON chats (organization_id, title_key text_pattern_ops);
