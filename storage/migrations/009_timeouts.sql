-- Bound what one session of the app role can hold. A statement running past
-- 30 s is cancelled; a session idle inside an open transaction for 60 s is
-- ended (its locks released, and the commit fence of the event log, which
-- waits for every older transaction, moves on). Work that needs longer runs
-- in bounded pieces: the CSV import commits 500 rows per transaction. New
-- sessions of bidi_app take these as their defaults.
ALTER ROLE bidi_app SET statement_timeout = '30s';
ALTER ROLE bidi_app SET idle_in_transaction_session_timeout = '60s';
