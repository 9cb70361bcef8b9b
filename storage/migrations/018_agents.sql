-- An agent acts in the audit trail as a user does: the rows its tool calls
-- write name it (events already carry agent_id).
ALTER TABLE audit_logs ADD COLUMN agent_id UUID REFERENCES ai_agents(id) ON DELETE SET NULL;

-- Follow-ups an agent scheduled on a chat (the schedule_followup tool): rows,
-- so they survive a restart. A scheduler claims due ones across orgs
-- (`running` with `claimed_at`); a claim older than its grace is taken again,
-- so a host that died mid-run does not lose the follow-up.
CREATE TABLE agent_followups (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  agent_id UUID NOT NULL REFERENCES ai_agents(id) ON DELETE CASCADE,
  chat_id UUID REFERENCES chats(id) ON DELETE CASCADE,
  contact_id UUID REFERENCES contacts(id) ON DELETE CASCADE,
  due_at TIMESTAMP NOT NULL,
  note TEXT NOT NULL,
  status VARCHAR(20) NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'done', 'cancelled')),
  claimed_at TIMESTAMP,
  done_at TIMESTAMP,
  created_at TIMESTAMP NOT NULL DEFAULT NOW()
);
-- The scheduler's scan: only follow-ups still to run are in the index.
CREATE INDEX idx_agent_followups_due ON agent_followups (due_at)
  WHERE status IN ('pending', 'running');
CREATE INDEX idx_agent_followups_chat ON agent_followups (chat_id);

ALTER TABLE agent_followups ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_followups FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON agent_followups
  USING (organization_id = bidi_org()) WITH CHECK (organization_id = bidi_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_followups TO bidi_app;
