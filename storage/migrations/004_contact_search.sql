-- Contact search: one lower-cased text per contact (name, email, phone,
-- telegram username) so a search is one LIKE per row instead of six ILIKEs,
-- and an index that serves the default newest-first listing per org.
ALTER TABLE contacts ADD COLUMN search_text TEXT GENERATED ALWAYS AS (lower(
  coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, '')
  || ' ' || coalesce(phone, '') || ' ' || coalesce(telegram_username, ''))) STORED;
CREATE INDEX idx_contacts_org_created ON contacts (organization_id, created_at DESC, id);
