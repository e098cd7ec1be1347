-- Override rules (issue 12). owner_id is the user's id, or 0 for the
-- operator's rules. The rule itself is its JSON (the rules crate's schema);
-- priority, enabled and name are kept beside it to list and order without
-- parsing. Names are unique per owner.
CREATE TABLE override_rules (
    id         TEXT PRIMARY KEY,
    owner_id   BIGINT NOT NULL,
    name       TEXT NOT NULL,
    api_types  TEXT NOT NULL DEFAULT '',
    priority   BIGINT NOT NULL DEFAULT 0,
    enabled    BIGINT NOT NULL DEFAULT 1,
    rule       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (owner_id, name)
);
CREATE INDEX override_rules_by_owner ON override_rules(owner_id, priority);

-- How often each rule applied, written in batches.
CREATE TABLE override_rule_hits (
    rule_id     TEXT PRIMARY KEY,
    hits        BIGINT NOT NULL DEFAULT 0,
    last_hit_at BIGINT
);
