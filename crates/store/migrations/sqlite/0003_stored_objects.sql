-- Objects users ask the gateway to keep: Responses (for previous_response_id,
-- retrieval and background runs), Conversations with their items, and chat
-- completions created with `store: true`. JSON columns hold the objects as
-- the API returns them. Every row has an owner; every read filters by it.
-- `expires_at` (NULL = kept forever) implements the configured retention.
CREATE TABLE responses (
    id                   TEXT PRIMARY KEY,
    user_id              INTEGER NOT NULL,
    previous_response_id TEXT,
    conversation_id      TEXT,
    status               TEXT NOT NULL,
    background           INTEGER NOT NULL DEFAULT 0,
    response             TEXT NOT NULL,
    input_items          TEXT NOT NULL,
    events               TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    expires_at           INTEGER
);
CREATE INDEX responses_by_user ON responses(user_id, created_at);
CREATE INDEX responses_by_expiry ON responses(expires_at);

CREATE TABLE conversations (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    metadata   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE INDEX conversations_by_expiry ON conversations(expires_at);

-- `seq` orders items as they were added.
CREATE TABLE conversation_items (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    id              TEXT NOT NULL,
    item            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, id)
);

CREATE TABLE chat_completions (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    model      TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    messages   TEXT NOT NULL,
    completion TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE INDEX chat_completions_by_user ON chat_completions(user_id, created_at);
CREATE INDEX chat_completions_by_expiry ON chat_completions(expires_at);
