-- Money columns are integers in nano-USD (1e-9 USD). Times are Unix milliseconds.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    name                  TEXT NOT NULL UNIQUE,
    group_name            TEXT NOT NULL DEFAULT 'default',
    tier                  TEXT NOT NULL DEFAULT 'free',
    membership_expires_at INTEGER,
    balance               INTEGER NOT NULL DEFAULT 0,
    free_balance          INTEGER NOT NULL DEFAULT 0,
    held                  INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    key_hash    TEXT NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    key_last4   TEXT NOT NULL,
    remark      TEXT NOT NULL DEFAULT '',
    is_admin    INTEGER NOT NULL DEFAULT 0,
    is_disabled INTEGER NOT NULL DEFAULT 0,
    permissions TEXT NOT NULL DEFAULT '[]',
    max_fee     INTEGER NOT NULL DEFAULT 0,
    used_fee    INTEGER NOT NULL DEFAULT 0,
    held        INTEGER NOT NULL DEFAULT 0,
    used_times  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER,
    expired_at  INTEGER
);
CREATE INDEX api_keys_by_user ON api_keys(user_id);

-- Worst-case cost held while a request is in flight. A row outlives a crash;
-- the sweeper releases it after expires_at.
CREATE TABLE holds (
    request_id TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    key_id     TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX holds_by_expiry ON holds(expires_at);

-- Append-only: every change of a balance, with the balance after it.
CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL,
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT UNIQUE,
    created_at    INTEGER NOT NULL
);
CREATE INDEX ledger_by_user ON ledger(user_id, id);

-- One row per request; its primary key makes settlement happen exactly once.
CREATE TABLE usage_records (
    request_id     TEXT PRIMARY KEY,
    user_id        INTEGER NOT NULL,
    key_id         TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    model          TEXT NOT NULL,
    provider       TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    stream         INTEGER NOT NULL,
    input_tokens   INTEGER NOT NULL,
    output_tokens  INTEGER NOT NULL,
    cached_tokens  INTEGER NOT NULL,
    cost           INTEGER NOT NULL,
    latency_ms     INTEGER NOT NULL,
    status         INTEGER NOT NULL,
    error          TEXT,
    created_at     INTEGER NOT NULL
);
CREATE INDEX usage_by_user_time ON usage_records(user_id, created_at);
