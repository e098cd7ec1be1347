-- Usage records of models metered in another unit than tokens (issue 14):
-- the unit (characters, seconds, minutes, images, calls), its quantity
-- kept in input_tokens. Empty for tokens.
ALTER TABLE usage_records ADD COLUMN unit TEXT NOT NULL DEFAULT '';
