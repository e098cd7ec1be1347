-- Money columns are integers in nano-USD (1e-9 USD). Times are Unix milliseconds.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id                    BIGSERIAL PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    group_name            TEXT NOT NULL DEFAULT 'default',
    tier                  TEXT NOT NULL DEFAULT 'free',
    membership_expires_at BIGINT,
    balance               BIGINT NOT NULL DEFAULT 0,
    free_balance          BIGINT NOT NULL DEFAULT 0,
    held                  BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    key_hash    TEXT NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    key_last4   TEXT NOT NULL,
    remark      TEXT NOT NULL DEFAULT '',
    is_admin    BIGINT NOT NULL DEFAULT 0,
    is_disabled BIGINT NOT NULL DEFAULT 0,
    permissions TEXT NOT NULL DEFAULT '[]',
    max_fee     BIGINT NOT NULL DEFAULT 0,
    used_fee    BIGINT NOT NULL DEFAULT 0,
    held        BIGINT NOT NULL DEFAULT 0,
    used_times  BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT,
    expired_at  BIGINT
);
CREATE INDEX api_keys_by_user ON api_keys(user_id);

-- Worst-case cost held while a request is in flight. A row outlives a crash;
-- the sweeper releases it after expires_at.
CREATE TABLE holds (
    request_id TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL,
    key_id     TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX holds_by_expiry ON holds(expires_at);

-- Append-only: every change of a balance, with the balance after it.
CREATE TABLE ledger (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT NOT NULL,
    amount        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT UNIQUE,
    created_at    BIGINT NOT NULL
);
CREATE INDEX ledger_by_user ON ledger(user_id, id);

-- One row per request; its primary key makes settlement happen exactly once.
CREATE TABLE usage_records (
    request_id     TEXT PRIMARY KEY,
    user_id        BIGINT NOT NULL,
    key_id         TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    model          TEXT NOT NULL,
    provider       TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    stream         BIGINT NOT NULL,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    cached_tokens  BIGINT NOT NULL,
    cost           BIGINT NOT NULL,
    latency_ms     BIGINT NOT NULL,
    status         BIGINT NOT NULL,
    error          TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX usage_by_user_time ON usage_records(user_id, created_at);
