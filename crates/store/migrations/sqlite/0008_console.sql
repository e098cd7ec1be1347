-- The web console (issue 15): users who can log in, and their sessions.
-- A user logs in by name or e-mail with a password (an argon2id hash; NULL:
-- no password, the account cannot log in). is_admin opens the admin pages;
-- is_disabled closes the console (and its sessions) to the user.
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN is_disabled INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX users_by_email ON users(email);

-- Server-side sessions: the cookie carries a random token, only its SHA-256
-- is kept (like API keys); each session has its own CSRF token.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    ip           TEXT NOT NULL DEFAULT '',
    user_agent   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);

-- The admin's usage pages read everyone's records newest first.
CREATE INDEX usage_by_time ON usage_records(created_at);

-- Usage per user, UTC day (days since 1970), model and channel, kept in the
-- settlement's transaction: the dashboards and charts read these few rows,
-- not every record. Tokens count records metered in tokens only.
CREATE TABLE usage_daily (
    user_id  INTEGER NOT NULL,
    day      INTEGER NOT NULL,
    model    TEXT NOT NULL,
    provider TEXT NOT NULL,
    requests INTEGER NOT NULL,
    cost     INTEGER NOT NULL,
    tokens   INTEGER NOT NULL,
    PRIMARY KEY (user_id, day, model, provider)
);
CREATE INDEX usage_daily_by_day ON usage_daily(day);
INSERT INTO usage_daily (user_id, day, model, provider, requests, cost, tokens)
SELECT user_id, created_at / 86400000, model, provider, COUNT(*), SUM(cost),
       SUM(CASE WHEN unit <> '' THEN 0
                WHEN input_tokens > 1000000000000000 OR output_tokens > 1000000000000000
                THEN 1000000000000000 ELSE input_tokens + output_tokens END)
FROM usage_records GROUP BY user_id, created_at / 86400000, model, provider;
