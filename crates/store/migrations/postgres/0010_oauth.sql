-- OAuth apps (issue 17): third-party applications that act for a user.
--
-- An app is registered by a user (its owner) with an exact list of
-- redirect URIs and the scopes it may ask for; its client secret is kept
-- as a SHA-256 hash. A user's approval makes a single-use code (hash only,
-- 10 minutes, bound to the app, the redirect URI and the PKCE challenge);
-- the code becomes a grant: an OAuth token (hash only) with the scopes and
-- the spending limits the user approved. Money amounts are nano-USD.
CREATE TABLE oauth_apps (
    id            BIGSERIAL PRIMARY KEY,
    client_id     TEXT NOT NULL UNIQUE,
    owner_id      BIGINT NOT NULL,
    name          TEXT NOT NULL,
    homepage      TEXT NOT NULL DEFAULT '',
    redirect_uris TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    is_suspended  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX oauth_apps_by_owner ON oauth_apps(owner_id);

CREATE TABLE oauth_codes (
    code_hash      TEXT PRIMARY KEY,
    app_id         BIGINT NOT NULL,
    user_id        BIGINT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    code_challenge TEXT,
    charge_limit   BIGINT NOT NULL,
    daily_limit    BIGINT NOT NULL,
    spend_limit    BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    -- The plain API key the keyless PKCE flow made of it.
    key_id         TEXT
);
CREATE INDEX oauth_codes_by_expiry ON oauth_codes(expires_at);

-- A grant's API access (scope `api`) is an API key row with the token's
-- hash (`api_keys.grant_id` names the grant; such keys are not listed or
-- managed as the user's own keys).
CREATE TABLE oauth_grants (
    id           TEXT PRIMARY KEY,
    app_id       BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    code_hash    TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    token_last4  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    charge_limit BIGINT NOT NULL,
    daily_limit  BIGINT NOT NULL,
    key_id       TEXT,
    created_at   BIGINT NOT NULL,
    used_at      BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX oauth_grants_by_user ON oauth_grants(user_id);
CREATE INDEX oauth_grants_by_app ON oauth_grants(app_id);
CREATE INDEX oauth_grants_by_code ON oauth_grants(code_hash);

-- Every fee an app charged: one row per (app, user, idempotency key), so a
-- replayed charge finds its first result. `fee` is the platform's part;
-- the owner was credited `amount - fee`. `day` is the UTC day number: a
-- user's approved daily limit counts every charge of the app that day.
CREATE TABLE oauth_charges (
    id              BIGSERIAL PRIMARY KEY,
    app_id          BIGINT NOT NULL,
    grant_id        TEXT NOT NULL,
    user_id         BIGINT NOT NULL,
    owner_id        BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    fee             BIGINT NOT NULL,
    description     TEXT NOT NULL,
    day             BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    UNIQUE (app_id, user_id, idempotency_key)
);
CREATE INDEX oauth_charges_by_day ON oauth_charges(app_id, user_id, day);
CREATE INDEX oauth_charges_by_user ON oauth_charges(user_id, id);
CREATE INDEX oauth_charges_by_app ON oauth_charges(app_id, id);

ALTER TABLE api_keys ADD COLUMN grant_id TEXT;
CREATE INDEX api_keys_by_grant ON api_keys(grant_id);
