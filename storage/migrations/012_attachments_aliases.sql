-- Attachments as the channel describes them, and the file once fetched:
-- `file_url` is the provider's reference (`telegram-file:<id>`) until the
-- file is in the data dir (`stored_at`), or `error` says why it never will be.
ALTER TABLE message_attachments ADD COLUMN kind VARCHAR(30);
ALTER TABLE message_attachments ADD COLUMN provider_file_id TEXT;
ALTER TABLE message_attachments ADD COLUMN stored_at TIMESTAMP;
ALTER TABLE message_attachments ADD COLUMN error TEXT;
CREATE INDEX idx_message_attachments_message ON message_attachments (message_id);

-- A contact merged into another lives on as an alias: a channel that keeps
-- naming the old id (its sender's derived id) finds the one that remains.
CREATE TABLE contact_aliases (
  organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  alias_id UUID NOT NULL,
  contact_id UUID NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  created_at TIMESTAMP NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, alias_id)
);
CREATE INDEX idx_contact_aliases_contact ON contact_aliases (contact_id);
ALTER TABLE contact_aliases ENABLE ROW LEVEL SECURITY;
ALTER TABLE contact_aliases FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contact_aliases USING (organization_id = bidi_org())
  WITH CHECK (organization_id = bidi_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON contact_aliases TO bidi_app;
