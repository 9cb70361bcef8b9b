-- Outbound delivery on a schedule. The chat actor is the only writer: after a
-- retryable failure it counts the attempt and sets when the next one is due,
-- so a restarted host continues the schedule instead of starting it over.
ALTER TABLE messages ADD COLUMN delivery_attempts SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN next_attempt_at TIMESTAMP;

-- The outbox sweeper's scan: outbound messages still pending, by when they
-- are due (never tried: since they were written). Only a few rows are ever
-- pending, so the index stays small however large `messages` grows.
CREATE INDEX idx_messages_outbound_due ON messages ((coalesce(next_attempt_at, created_at)))
  WHERE status = 'pending' AND NOT is_incoming;
