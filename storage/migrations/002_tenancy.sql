-- Tenant isolation: the application role and row-level security.
-- bidi_app is not superuser, owns nothing and has no BYPASSRLS; every tenant
-- table has RLS enabled AND forced, with a policy on app.org_id.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bidi_app') THEN
    CREATE ROLE bidi_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
  END IF;
END $$;
ALTER ROLE bidi_app NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;

CREATE FUNCTION bidi_org() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE AS
  $$ SELECT NULLIF(current_setting('app.org_id', true), '')::uuid $$;
CREATE FUNCTION bidi_user() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE AS
  $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;

GRANT USAGE ON SCHEMA public TO bidi_app;
GRANT EXECUTE ON FUNCTION bidi_org(), bidi_user() TO bidi_app;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[
    'organization_members', 'companies', 'contacts', 'pipelines', 'pipeline_stages',
    'deals', 'chats', 'messages', 'message_attachments', 'ai_agents', 'agent_memories',
    'agent_executions', 'campaigns', 'campaign_messages', 'subscriptions', 'usage_logs',
    'invoices', 'integrations', 'webhooks', 'webhook_deliveries', 'events', 'audit_logs',
    'api_keys', 'refresh_tokens', 'channel_cursors'
  ] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (organization_id = bidi_org()) '
      'WITH CHECK (organization_id = bidi_org())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO bidi_app', t);
  END LOOP;
END $$;

-- The organization itself: visible and editable only from inside it.
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
  USING (id = bidi_org()) WITH CHECK (id = bidi_org());
GRANT SELECT, UPDATE ON organizations TO bidi_app;

-- Users are global; a tenant sees itself and the members of its org.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY member_visibility ON users
  USING (id = bidi_user() OR EXISTS (
    SELECT 1 FROM organization_members m
    WHERE m.user_id = users.id AND m.organization_id = bidi_org()))
  WITH CHECK (id = bidi_user());
GRANT SELECT, UPDATE ON users TO bidi_app;

ALTER TABLE oauth_connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_connections FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON oauth_connections
  USING (user_id = bidi_user()) WITH CHECK (user_id = bidi_user());
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth_connections TO bidi_app;

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO bidi_app;
