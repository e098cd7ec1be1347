-- Rate limits set on a user or a key (NULL: not limited at that level).
ALTER TABLE users ADD COLUMN rpm BIGINT;
ALTER TABLE users ADD COLUMN tpm BIGINT;
ALTER TABLE users ADD COLUMN concurrency BIGINT;
ALTER TABLE api_keys ADD COLUMN rpm BIGINT;
ALTER TABLE api_keys ADD COLUMN tpm BIGINT;
ALTER TABLE api_keys ADD COLUMN concurrency BIGINT;

-- Bumped by every change of a user's balances or a key's spending or
-- limit: instances sharing admission through Redis keep the figures of the
-- newest revision they have seen, whatever order their updates arrive in.
ALTER TABLE users ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
