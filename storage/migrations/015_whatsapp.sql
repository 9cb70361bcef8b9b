-- A WhatsApp number's notifications go to one integration: Meta posts all
-- of an app's numbers to one URL, routed by the number's id.
CREATE UNIQUE INDEX uq_integrations_whatsapp_number
  ON integrations ((config->>'phone_number_id')) WHERE type = 'whatsapp';

-- A phone as digits only, so that "+1 (650) 555-1234" and WhatsApp's
-- "16505551234" match when a sender is looked up among the CRM's contacts.
CREATE FUNCTION bidi_phone_digits(phone text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT nullif(regexp_replace(coalesce(phone, ''), '\D', '', 'g'), '') $$;
GRANT EXECUTE ON FUNCTION bidi_phone_digits(text) TO bidi_app;
CREATE INDEX idx_contacts_phone_digits ON contacts (organization_id, bidi_phone_digits(phone))
  WHERE phone IS NOT NULL;
CREATE INDEX idx_contacts_whatsapp_digits
  ON contacts (organization_id, bidi_phone_digits(whatsapp_phone))
  WHERE whatsapp_phone IS NOT NULL;
