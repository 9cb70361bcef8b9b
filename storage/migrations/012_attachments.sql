-- Attachments as the channel describes them, and the file once fetched:
-- `file_url` is the provider's reference (`telegram-file:<id>`) until the
-- file is in the data dir (`stored_at`), or `error` says why it never will be.
ALTER TABLE message_attachments ADD COLUMN kind VARCHAR(30);
ALTER TABLE message_attachments ADD COLUMN provider_file_id TEXT;
ALTER TABLE message_attachments ADD COLUMN stored_at TIMESTAMP;
ALTER TABLE message_attachments ADD COLUMN error TEXT;
CREATE INDEX idx_message_attachments_message ON message_attachments (message_id);
