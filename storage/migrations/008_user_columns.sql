-- The application role reads other members' profiles (names, emails) but
-- never their credentials: password hashes, TOTP secrets and recovery codes
-- are read and written only by the owner role, during sign-in.
REVOKE SELECT, UPDATE ON users FROM bidi_app;
GRANT SELECT (id, email, name, avatar_url, mfa_enabled, created_at, updated_at)
  ON users TO bidi_app;
GRANT UPDATE (name, avatar_url, updated_at) ON users TO bidi_app;
