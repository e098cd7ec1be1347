-- Users' files (issue 13). The bytes live in the storage backend under the
-- file's id. A row exists before its bytes are written and goes only after
-- they are deleted, so no bytes are ever left without a row that leads the
-- sweeper to them. state: 'uploading' (bytes being written), 'ready',
-- 'deleting' (bytes being removed), 'deleted' (gone; the row is kept until
-- storage pricing has charged every day the file was stored).
CREATE TABLE files (
    id           TEXT PRIMARY KEY,
    user_id      BIGINT NOT NULL,
    filename     TEXT NOT NULL,
    purpose      BIGINT NOT NULL DEFAULT 0,
    is_public    BIGINT NOT NULL DEFAULT 0,
    tags         TEXT NOT NULL DEFAULT '[]',
    content_type TEXT NOT NULL DEFAULT '',
    size         BIGINT NOT NULL DEFAULT 0,
    sha256       TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL,
    expires_at   BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    deleted_at   BIGINT
);
CREATE INDEX files_by_user ON files(user_id, state, created_at);
CREATE INDEX files_by_state ON files(state, updated_at);
CREATE INDEX files_by_expiry ON files(expires_at);

-- A file's tags, one row each, to filter on.
CREATE TABLE file_tags (
    file_id TEXT NOT NULL,
    tag     TEXT NOT NULL,
    PRIMARY KEY (file_id, tag)
);
CREATE INDEX file_tags_by_tag ON file_tags(tag, file_id);

-- The UTC days (days since 1970-01-01) whose storage has been charged: each
-- once, by whichever instance gets there first.
CREATE TABLE storage_charge_days (
    day        BIGINT PRIMARY KEY,
    charged_at BIGINT NOT NULL
);
