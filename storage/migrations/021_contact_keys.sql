-- The keys a channel's sender is matched to a contact by (storage.senders
-- FIND_CONTACT: on every new conversation), as stored generated columns.
-- Under RLS an index serves only LEAKPROOF conditions next to the policy's
-- organization_id (see migrations 006 and 020): lower() and
-- bidi_phone_digits() are not, so `lower(email) = $1` and
-- `bidi_phone_digits(phone) = $1` read every contact of the org, however
-- the indexes on those expressions were made. Plain `=` on these columns
-- is leakproof.
ALTER TABLE contacts
  ADD COLUMN email_key TEXT GENERATED ALWAYS AS (lower(email)) STORED,
  ADD COLUMN phone_key TEXT GENERATED ALWAYS AS (bidi_phone_digits(phone)) STORED,
  ADD COLUMN whatsapp_key TEXT GENERATED ALWAYS AS (bidi_phone_digits(whatsapp_phone)) STORED;

CREATE INDEX idx_contacts_email_key ON contacts (organization_id, email_key)
  WHERE email_key IS NOT NULL;
CREATE INDEX idx_contacts_phone_key ON contacts (organization_id, phone_key)
  WHERE phone_key IS NOT NULL;
CREATE INDEX idx_contacts_whatsapp_key ON contacts (organization_id, whatsapp_key)
  WHERE whatsapp_key IS NOT NULL;
-- What these replace: indexes RLS queries could not use.
DROP INDEX idx_contacts_phone_digits;
DROP INDEX idx_contacts_whatsapp_digits;
