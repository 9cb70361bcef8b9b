-- Identity and CRM additions: case-insensitive unique emails per org,
-- single-use recovery codes, TOTP replay guard, invitations, notes.
CREATE UNIQUE INDEX uq_users_email_lower ON users (lower(email));
CREATE UNIQUE INDEX uq_contacts_org_email ON contacts (organization_id, lower(email))
  WHERE email IS NOT NULL;
CREATE INDEX idx_contacts_tags ON contacts USING gin (tags);

ALTER TABLE users ADD COLUMN mfa_last_step BIGINT;
ALTER TABLE users ADD COLUMN mfa_recovery_codes TEXT[] NOT NULL DEFAULT '{}';

CREATE TABLE invitations (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  email VARCHAR(255) NOT NULL,
  role VARCHAR(50) NOT NULL,
  token_hash VARCHAR(128) UNIQUE NOT NULL,
  invited_by UUID REFERENCES users(id) ON DELETE SET NULL,
  expires_at TIMESTAMP NOT NULL,
  accepted_at TIMESTAMP,
  created_at TIMESTAMP DEFAULT NOW()
);

CREATE TABLE notes (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  contact_id UUID REFERENCES contacts(id) ON DELETE CASCADE,
  deal_id UUID REFERENCES deals(id) ON DELETE CASCADE,
  author_id UUID REFERENCES users(id) ON DELETE SET NULL,
  body TEXT NOT NULL,
  created_at TIMESTAMP DEFAULT NOW(),
  updated_at TIMESTAMP DEFAULT NOW(),
  CHECK (contact_id IS NOT NULL OR deal_id IS NOT NULL)
);
CREATE INDEX idx_notes_contact ON notes (contact_id);
CREATE INDEX idx_notes_deal ON notes (deal_id);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['invitations', 'notes'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (organization_id = bidi_org()) '
      'WITH CHECK (organization_id = bidi_org())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO bidi_app', t);
  END LOOP;
END $$;
