-- Anthropic prompt-cache writes, billed at their own price.
ALTER TABLE usage_records ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
