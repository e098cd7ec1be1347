//! Override rules as stored: each the JSON of a rule (the `rules` crate
//! reads and checks it; this layer keeps it opaque), with its name,
//! priority, enabled flag and the API types it names beside it, to list
//! and order without parsing. Every query is scoped by owner: a user's id,
//! or [`OPERATOR`] for the operator's rules.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{json_text, now_ms, parse_json_column, Result, Store, StoreError};

/// The owner of the operator's rules (user ids start at 1).
pub const OPERATOR: i64 = 0;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    pub id: String,
    pub owner_id: i64,
    pub name: String,
    /// The API types its conditions name, comma-separated (for filtering).
    pub api_types: String,
    pub priority: i64,
    pub enabled: bool,
    pub rule: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which of an owner's rules to list.
#[derive(Debug, Clone, Default)]
pub struct RuleFilter {
    pub enabled: Option<bool>,
    pub api_type: Option<String>,
    /// Names containing this.
    pub name: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// How often a rule applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHits {
    pub rule_id: String,
    pub hits: i64,
    pub last_hit_at: Option<i64>,
}

const COLUMNS: &str =
    "id, owner_id, name, api_types, priority, enabled, rule, created_at, updated_at";

fn rule_from_row(row: &AnyRow) -> Result<StoredRule> {
    Ok(StoredRule {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        name: row.try_get("name")?,
        api_types: row.try_get("api_types")?,
        priority: row.try_get("priority")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        rule: parse_json_column(row, "rule")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn name_taken(e: sqlx::Error, name: &str) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("a rule named {name:?} exists already"))
        }
        other => other.into(),
    }
}

impl Store {
    /// Inserts rules, all or none (an import), unless the owner would then
    /// hold more than `max_rules`.
    pub async fn insert_rules(&self, rules: &[StoredRule], max_rules: i64) -> Result<()> {
        let Some(owner) = rules.first().map(|r| r.owner_id) else {
            return Ok(());
        };
        let mut tx = self.writer.begin().await?;
        let held: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM override_rules WHERE owner_id = $1")
                .bind(owner)
                .fetch_one(&mut *tx)
                .await?;
        if held + rules.len() as i64 > max_rules {
            return Err(StoreError::Conflict(format!(
                "an account holds at most {max_rules} rules"
            )));
        }
        for r in rules {
            sqlx::query(
                "INSERT INTO override_rules (id, owner_id, name, api_types, priority, enabled, rule, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&r.id)
            .bind(r.owner_id)
            .bind(&r.name)
            .bind(&r.api_types)
            .bind(r.priority)
            .bind(r.enabled as i64)
            .bind(json_text(&r.rule)?)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| name_taken(e, &r.name))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces one of the owner's rules (its id and creation time stay).
    pub async fn update_rule(&self, r: &StoredRule) -> Result<StoredRule> {
        let done = sqlx::query(
            "UPDATE override_rules SET name = $1, api_types = $2, priority = $3, enabled = $4, \
             rule = $5, updated_at = $6 WHERE id = $7 AND owner_id = $8",
        )
        .bind(&r.name)
        .bind(&r.api_types)
        .bind(r.priority)
        .bind(r.enabled as i64)
        .bind(json_text(&r.rule)?)
        .bind(now_ms())
        .bind(&r.id)
        .bind(r.owner_id)
        .execute(&self.writer)
        .await
        .map_err(|e| name_taken(e, &r.name))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("rule"));
        }
        self.get_rule(r.owner_id, &r.id).await
    }

    /// Enables or disables some of the owner's rules; returns how many.
    pub async fn toggle_rules(&self, owner_id: i64, ids: &[String], enabled: bool) -> Result<u64> {
        let mut changed = 0;
        let mut tx = self.writer.begin().await?;
        for id in ids {
            changed += sqlx::query(
                "UPDATE override_rules SET enabled = $1, updated_at = $2 WHERE id = $3 AND owner_id = $4",
            )
            .bind(enabled as i64)
            .bind(now_ms())
            .bind(id)
            .bind(owner_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Deletes some of the owner's rules (and their counts); returns how many.
    pub async fn delete_rules(&self, owner_id: i64, ids: &[String]) -> Result<u64> {
        let mut deleted = 0;
        let mut tx = self.writer.begin().await?;
        for id in ids {
            let done = sqlx::query("DELETE FROM override_rules WHERE id = $1 AND owner_id = $2")
                .bind(id)
                .bind(owner_id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() > 0 {
                sqlx::query("DELETE FROM override_rule_hits WHERE rule_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            deleted += done.rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn get_rule(&self, owner_id: i64, id: &str) -> Result<StoredRule> {
        let sql = format!("SELECT {COLUMNS} FROM override_rules WHERE id = $1 AND owner_id = $2");
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(owner_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("rule"))?;
        rule_from_row(&row)
    }

    /// The owner's rules matching `filter`, in running order (priority,
    /// then creation), and how many match in all.
    pub async fn list_rules(
        &self,
        owner_id: i64,
        filter: &RuleFilter,
    ) -> Result<(Vec<StoredRule>, i64)> {
        let mut clauses = vec!["owner_id = $1".to_string()];
        let mut n = 1;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.enabled.is_some() {
            clauses.push(format!("enabled = {}", next()));
        }
        if filter.api_type.is_some() {
            clauses.push(format!("(',' || api_types || ',') LIKE {}", next()));
        }
        if filter.name.is_some() {
            clauses.push(format!("name LIKE {}", next()));
        }
        let filter_sql = clauses.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) AS n FROM override_rules WHERE {filter_sql}");
        let total: i64 = bind_filter(&count_sql, owner_id, filter)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let list_sql = format!(
            "SELECT {COLUMNS} FROM override_rules WHERE {filter_sql} \
             ORDER BY priority DESC, created_at, id LIMIT {} OFFSET {}",
            filter.limit.max(0),
            filter.offset.max(0)
        );
        let rows = bind_filter(&list_sql, owner_id, filter)
            .fetch_all(&self.pool)
            .await?;
        let rules = rows.iter().map(rule_from_row).collect::<Result<Vec<_>>>()?;
        Ok((rules, total))
    }

    /// When the owner's rules last changed (0: never), to tell a cached copy
    /// is stale.
    pub async fn rules_changed_at(&self, owner_id: i64) -> Result<i64> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT MAX(updated_at) FROM override_rules WHERE owner_id = $1")
                .bind(owner_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(at.unwrap_or(0))
    }

    /// Adds counted hits: (rule id, hits, last hit at).
    pub async fn add_rule_hits(&self, hits: &[(String, i64, i64)]) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for (rule_id, n, at) in hits {
            sqlx::query(
                "INSERT INTO override_rule_hits (rule_id, hits, last_hit_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (rule_id) DO UPDATE SET hits = override_rule_hits.hits + $2, \
                 last_hit_at = CASE WHEN override_rule_hits.last_hit_at > $3 \
                 THEN override_rule_hits.last_hit_at ELSE $3 END",
            )
            .bind(rule_id)
            .bind(n)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The hit counts of the owner's rules.
    pub async fn rule_hits(&self, owner_id: i64) -> Result<Vec<RuleHits>> {
        let rows = sqlx::query(
            "SELECT r.id AS rule_id, COALESCE(h.hits, 0) AS hits, h.last_hit_at AS last_hit_at \
             FROM override_rules r LEFT JOIN override_rule_hits h ON h.rule_id = r.id \
             WHERE r.owner_id = $1 ORDER BY r.priority DESC, r.created_at, r.id",
        )
        .bind(owner_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RuleHits {
                    rule_id: row.try_get("rule_id")?,
                    hits: row.try_get("hits")?,
                    last_hit_at: row.try_get("last_hit_at")?,
                })
            })
            .collect()
    }
}

/// `sql` (a listing's) with the owner and the filter's values bound, in the
/// order [`Store::list_rules`] numbers them.
fn bind_filter<'q>(
    sql: &'q str,
    owner_id: i64,
    filter: &RuleFilter,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query(sql).bind(owner_id);
    if let Some(enabled) = filter.enabled {
        query = query.bind(enabled as i64);
    }
    if let Some(api) = &filter.api_type {
        query = query.bind(format!("%,{},%", like_literal(api)));
    }
    if let Some(name) = &filter.name {
        query = query.bind(format!("%{}%", like_literal(name)));
    }
    query
}

/// `text` with LIKE's wildcards taken literally (SQLite and PostgreSQL both
/// read `\` as the escape only when told; so they are dropped instead).
fn like_literal(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, '%' | '_')).collect()
}
