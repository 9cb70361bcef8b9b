-- Which provider an agent uses (NULL: the org's OpenAI or Anthropic
-- integration, else the engine's key, else the offline provider), and what
-- a run is tied to.
ALTER TABLE ai_agents ADD COLUMN provider VARCHAR(20);
ALTER TABLE agent_executions ADD COLUMN chat_id UUID REFERENCES chats(id) ON DELETE SET NULL;
ALTER TABLE agent_executions ADD COLUMN provider VARCHAR(20);
CREATE INDEX idx_agent_executions_agent ON agent_executions (agent_id, created_at DESC, id);
CREATE INDEX idx_agent_executions_org_day ON agent_executions (organization_id, created_at);

-- An agent's draft waits as `draft` (never sent, never swept as pending)
-- until a person approves it (then `pending`, sent like any reply) or
-- rejects it (`rejected`).
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
  CHECK (status IN ('pending', 'sent', 'delivered', 'read', 'failed', 'draft', 'rejected'));

-- Where the follow-up trigger has read the stream of `deal.stage.changed`
-- events up to (the outbox sweeper's; not a tenant's table).
CREATE TABLE agent_trigger_cursors (
  name TEXT PRIMARY KEY,
  position BIGINT NOT NULL,
  updated_at TIMESTAMP NOT NULL DEFAULT now()
);
CREATE INDEX idx_events_deal_moves ON events (seq) WHERE event_type = 'deal.stage.changed';
