-- Contact search through an index, under row-level security.
--
-- With RLS on, Postgres applies the policy's condition before any condition
-- of the query that is not LEAKPROOF, and LIKE, @> and @@ are not: so no
-- index could serve `search_text LIKE '%q%'` for bidi_app, and every search
-- read all of an org's contacts. The byte-wise comparison operators of
-- text_pattern_ops (~>=~, ~<~) ARE leakproof, so a prefix range over a
-- B-tree of search terms is usable next to the policy's organization_id.
--
-- Terms of a contact: each word of its name, its email (whole, and each part
-- split at @ . + _ -), its Telegram username, and every run of 4+ trailing
-- digits of its phone (so any digits of a number, from the start of a run,
-- find it). A search word matches a contact when some term starts with it.
CREATE TABLE contact_terms (
  organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  contact_id UUID NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  term TEXT NOT NULL
);
CREATE INDEX idx_contact_terms_search ON contact_terms (organization_id, term text_pattern_ops);
CREATE INDEX idx_contact_terms_contact ON contact_terms (contact_id);

ALTER TABLE contact_terms ENABLE ROW LEVEL SECURITY;
ALTER TABLE contact_terms FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contact_terms
  USING (organization_id = bidi_org()) WITH CHECK (organization_id = bidi_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON contact_terms TO bidi_app;

CREATE FUNCTION bidi_contact_terms(first_name text, last_name text, email text, phone text,
                                   telegram text) RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT array_remove(
    string_to_array(lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '')), ' ')
    || lower(email)
    || string_to_array(translate(lower(coalesce(email, '')), '@.+_-', '     '), ' ')
    || lower(ltrim(telegram, '@'))
    || ARRAY(SELECT right(d, n)
             FROM (SELECT regexp_replace(coalesce(phone, ''), '\D', '', 'g')) p(d),
                  generate_series(4, length(d)) n),
    '')
$$;

-- Kept in step by statement-level triggers (one INSERT per statement, so a
-- bulk import costs one pass, not one trigger call per row).
CREATE FUNCTION bidi_contact_terms_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO contact_terms (organization_id, contact_id, term)
  SELECT n.organization_id, n.id, left(t.term, 200)
  FROM new_rows n, unnest(bidi_contact_terms(n.first_name, n.last_name, n.email, n.phone,
                                             n.telegram_username)) t(term)
  WHERE n.organization_id IS NOT NULL AND t.term IS NOT NULL;
  RETURN NULL;
END $$;

CREATE FUNCTION bidi_contact_terms_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM contact_terms WHERE contact_id IN (
    SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE (n.first_name, n.last_name, n.email, n.phone, n.telegram_username)
      IS DISTINCT FROM (o.first_name, o.last_name, o.email, o.phone, o.telegram_username));
  INSERT INTO contact_terms (organization_id, contact_id, term)
  SELECT n.organization_id, n.id, left(t.term, 200)
  FROM new_rows n JOIN old_rows o ON o.id = n.id,
       unnest(bidi_contact_terms(n.first_name, n.last_name, n.email, n.phone,
                                 n.telegram_username)) t(term)
  WHERE n.organization_id IS NOT NULL AND t.term IS NOT NULL
    AND (n.first_name, n.last_name, n.email, n.phone, n.telegram_username)
      IS DISTINCT FROM (o.first_name, o.last_name, o.email, o.phone, o.telegram_username);
  RETURN NULL;
END $$;

CREATE TRIGGER contacts_terms_insert AFTER INSERT ON contacts
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION bidi_contact_terms_added();
CREATE TRIGGER contacts_terms_update AFTER UPDATE ON contacts
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION bidi_contact_terms_changed();

INSERT INTO contact_terms (organization_id, contact_id, term)
SELECT c.organization_id, c.id, left(t.term, 200)
FROM contacts c, unnest(bidi_contact_terms(c.first_name, c.last_name, c.email, c.phone,
                                           c.telegram_username)) t(term)
WHERE c.organization_id IS NOT NULL AND t.term IS NOT NULL;

-- The LIKE column it replaces (migration 004).
ALTER TABLE contacts DROP COLUMN search_text;
