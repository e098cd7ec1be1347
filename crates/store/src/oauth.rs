//! OAuth apps, their authorization codes, the grants users made to them and
//! the fees they charged.
//!
//! Secrets (client secrets, codes, tokens) arrive hashed: the gateway alone
//! sees them. Every change of money is one transaction:
//! [`Store::oauth_charge`] locks the grant, checks the idempotency key, the
//! per-charge and per-day limits the user approved and the balance, debits
//! the user and credits the app's owner, with a ledger entry on each.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::keys::{insert_key_row, NewKey};
use crate::users::{user_from_row, USER_COLUMNS};
use crate::{json_text, now_ms, parse_json_column, Result, Store, StoreError};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// A registered third-party application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthApp {
    pub id: i64,
    pub client_id: String,
    pub owner_id: i64,
    pub name: String,
    pub homepage: String,
    /// Exact redirect URIs: a code goes only to one of these.
    pub redirect_uris: Vec<String>,
    /// The scopes the app may ask for.
    pub scopes: Vec<String>,
    #[serde(skip)]
    pub secret_hash: String,
    pub is_suspended: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An app to register.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub client_id: String,
    pub owner_id: i64,
    pub name: String,
    pub homepage: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub secret_hash: String,
}

/// What an owner may change of an app; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct AppUpdate {
    pub name: Option<String>,
    pub homepage: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub secret_hash: Option<String>,
}

/// A user's approval, waiting to be exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthCode {
    pub code_hash: String,
    pub app_id: i64,
    pub user_id: i64,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// The PKCE S256 challenge, if the app sent one.
    pub code_challenge: Option<String>,
    pub charge_limit: i64,
    pub daily_limit: i64,
    pub spend_limit: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A user's standing approval of an app: its token (hash) and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub id: String,
    pub app_id: i64,
    pub user_id: i64,
    pub token_last4: String,
    pub scopes: Vec<String>,
    pub charge_limit: i64,
    pub daily_limit: i64,
    /// The API key carrying the grant's API access (scope `api`).
    pub key_id: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a redeemed code becomes.
#[derive(Debug, Clone)]
pub enum Redemption {
    /// An OAuth token: a grant, with an API key of the same hash when it
    /// may call the APIs.
    Token {
        grant_id: String,
        token_hash: String,
        token_last4: String,
        key: Option<NewKey>,
    },
    /// A plain API key of the user (the keyless PKCE flow).
    Key(NewKey),
}

/// Why a code could not be redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRefusal {
    Unknown,
    /// Used before: whatever it was exchanged for is revoked.
    Reused,
    Expired,
    OtherClient,
}

/// A fee to charge.
#[derive(Debug, Clone)]
pub struct NewCharge {
    pub grant_id: String,
    pub idempotency_key: String,
    pub amount: i64,
    /// The platform's part; the owner is credited `amount - fee`.
    pub fee: i64,
    pub description: String,
    /// The ledger entries' text names the app.
    pub app_label: String,
}

/// A fee charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Charge {
    pub id: i64,
    pub app_id: i64,
    pub grant_id: String,
    pub user_id: i64,
    pub owner_id: i64,
    pub idempotency_key: String,
    pub amount: i64,
    pub fee: i64,
    pub description: String,
    pub created_at: i64,
}

/// How a charge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Charged {
        charge: Charge,
        balance_after: i64,
    },
    /// The idempotency key was used before, for the same amount: its first
    /// result, nothing charged again.
    Replayed(Charge),
    /// Past the approved limit per charge, or what is left of today's.
    OverLimit {
        per_charge: bool,
        left_today: i64,
    },
    /// The paid balance (less what is held) cannot cover it.
    Insufficient,
    /// The idempotency key was used for another amount.
    KeyReused,
    /// The grant was revoked.
    Revoked,
}

/// An app a user has connected, with what it charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub grant: Grant,
    pub client_id: String,
    pub app_name: String,
    pub homepage: String,
    pub charged: i64,
    pub charges: i64,
}

/// What an owner's app earned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Earnings {
    pub client_id: String,
    pub app_name: String,
    pub charges: i64,
    /// Charged to users.
    pub charged: i64,
    /// The platform's fees.
    pub fees: i64,
    /// Credited to the owner.
    pub earned: i64,
    pub users: i64,
}

const APP_COLUMNS: &str = "id, client_id, owner_id, name, homepage, redirect_uris, scopes, \
    secret_hash, is_suspended, created_at, updated_at";
const GRANT_COLUMNS: &str = "g.id, g.app_id, g.user_id, g.token_last4, g.scopes, \
    g.charge_limit, g.daily_limit, g.key_id, g.created_at, g.revoked_at";
const CODE_COLUMNS: &str = "code_hash, app_id, user_id, redirect_uri, scopes, code_challenge, \
    charge_limit, daily_limit, spend_limit, created_at, expires_at, used_at";
const CHARGE_COLUMNS: &str = "id, app_id, grant_id, user_id, owner_id, idempotency_key, amount, \
    fee, description, created_at";

fn app_from_row(row: &AnyRow) -> Result<OAuthApp> {
    Ok(OAuthApp {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        owner_id: row.try_get("owner_id")?,
        name: row.try_get("name")?,
        homepage: row.try_get("homepage")?,
        redirect_uris: parse_json_column(row, "redirect_uris")?,
        scopes: parse_json_column(row, "scopes")?,
        secret_hash: row.try_get("secret_hash")?,
        is_suspended: row.try_get::<i64, _>("is_suspended")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn grant_from_row(row: &AnyRow) -> Result<Grant> {
    Ok(Grant {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        user_id: row.try_get("user_id")?,
        token_last4: row.try_get("token_last4")?,
        scopes: parse_json_column(row, "scopes")?,
        charge_limit: row.try_get("charge_limit")?,
        daily_limit: row.try_get("daily_limit")?,
        key_id: row.try_get("key_id")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn code_from_row(row: &AnyRow) -> Result<OAuthCode> {
    Ok(OAuthCode {
        code_hash: row.try_get("code_hash")?,
        app_id: row.try_get("app_id")?,
        user_id: row.try_get("user_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        scopes: parse_json_column(row, "scopes")?,
        code_challenge: row.try_get("code_challenge")?,
        charge_limit: row.try_get("charge_limit")?,
        daily_limit: row.try_get("daily_limit")?,
        spend_limit: row.try_get("spend_limit")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
    })
}

fn charge_from_row(row: &AnyRow) -> Result<Charge> {
    Ok(Charge {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        grant_id: row.try_get("grant_id")?,
        user_id: row.try_get("user_id")?,
        owner_id: row.try_get("owner_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        amount: row.try_get("amount")?,
        fee: row.try_get("fee")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
    })
}

/// An earlier charge under the same idempotency key: its result, or a
/// refusal when the key now comes with another amount.
pub fn replay(earlier: Charge, amount: i64) -> ChargeOutcome {
    if earlier.amount == amount {
        ChargeOutcome::Replayed(earlier)
    } else {
        ChargeOutcome::KeyReused
    }
}

/// The UTC day number of a Unix millisecond time.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

impl Store {
    pub async fn insert_app(&self, new: &NewApp) -> Result<OAuthApp> {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO oauth_apps (client_id, owner_id, name, homepage, redirect_uris, scopes, \
             secret_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             RETURNING {APP_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(&new.client_id)
            .bind(new.owner_id)
            .bind(&new.name)
            .bind(&new.homepage)
            .bind(json_text(&new.redirect_uris)?)
            .bind(json_text(&new.scopes)?)
            .bind(&new.secret_hash)
            .bind(now)
            .fetch_one(&self.writer)
            .await?;
        app_from_row(&row)
    }

    /// Apps registered by `owner`, oldest first.
    pub async fn count_apps(&self, owner_id: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM oauth_apps WHERE owner_id = $1")
                .bind(owner_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn app(&self, client_id: &str) -> Result<OAuthApp> {
        let sql = format!("SELECT {APP_COLUMNS} FROM oauth_apps WHERE client_id = $1");
        let row = sqlx::query(&sql)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("OAuth app"))?;
        app_from_row(&row)
    }

    pub async fn app_by_id(&self, id: i64) -> Result<OAuthApp> {
        let sql = format!("SELECT {APP_COLUMNS} FROM oauth_apps WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("OAuth app"))?;
        app_from_row(&row)
    }

    /// An owner's apps (every app for `None`), oldest first.
    pub async fn list_apps(&self, owner_id: Option<i64>) -> Result<Vec<OAuthApp>> {
        let rows = match owner_id {
            Some(owner) => {
                let sql =
                    format!("SELECT {APP_COLUMNS} FROM oauth_apps WHERE owner_id = $1 ORDER BY id");
                sqlx::query(&sql).bind(owner).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {APP_COLUMNS} FROM oauth_apps ORDER BY id");
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(app_from_row).collect()
    }

    /// Changes an owner's app (another owner's is not found).
    pub async fn update_app(
        &self,
        client_id: &str,
        owner_id: i64,
        update: &AppUpdate,
    ) -> Result<OAuthApp> {
        let app = self.app(client_id).await?;
        if app.owner_id != owner_id {
            return Err(StoreError::NotFound("OAuth app"));
        }
        let sql = format!(
            "UPDATE oauth_apps SET name = $1, homepage = $2, redirect_uris = $3, scopes = $4, \
             secret_hash = $5, updated_at = $6 WHERE id = $7 RETURNING {APP_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(update.name.as_ref().unwrap_or(&app.name))
            .bind(update.homepage.as_ref().unwrap_or(&app.homepage))
            .bind(json_text(
                update.redirect_uris.as_ref().unwrap_or(&app.redirect_uris),
            )?)
            .bind(json_text(update.scopes.as_ref().unwrap_or(&app.scopes))?)
            .bind(update.secret_hash.as_ref().unwrap_or(&app.secret_hash))
            .bind(now_ms())
            .bind(app.id)
            .fetch_one(&self.writer)
            .await?;
        app_from_row(&row)
    }

    /// Suspends (or restores) an app: its tokens and their API keys stop
    /// (or start again) working at once.
    pub async fn set_app_suspended(&self, client_id: &str, suspended: bool) -> Result<OAuthApp> {
        let mut tx = self.writer.begin().await?;
        let sql = format!(
            "UPDATE oauth_apps SET is_suspended = $1, updated_at = $2 WHERE client_id = $3 \
             RETURNING {APP_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(suspended as i64)
            .bind(now_ms())
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("OAuth app"))?;
        let app = app_from_row(&row)?;
        sqlx::query(
            "UPDATE api_keys SET is_disabled = $1, revision = revision + 1 WHERE grant_id IN \
             (SELECT id FROM oauth_grants WHERE app_id = $2 AND revoked_at IS NULL)",
        )
        .bind(suspended as i64)
        .bind(app.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(app)
    }

    /// Deletes an owner's app: every grant to it is revoked, its codes go.
    /// Its charges stay (they are history).
    pub async fn delete_app(&self, client_id: &str, owner_id: i64) -> Result<()> {
        let app = self.app(client_id).await?;
        if app.owner_id != owner_id {
            return Err(StoreError::NotFound("OAuth app"));
        }
        let mut tx = self.writer.begin().await?;
        revoke(&mut tx, Grants::OfApp(app.id)).await?;
        sqlx::query("DELETE FROM oauth_codes WHERE app_id = $1")
            .bind(app.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM oauth_apps WHERE id = $1")
            .bind(app.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_code(&self, code: &OAuthCode) -> Result<()> {
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, app_id, user_id, redirect_uri, scopes, \
             code_challenge, charge_limit, daily_limit, spend_limit, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&code.code_hash)
        .bind(code.app_id)
        .bind(code.user_id)
        .bind(&code.redirect_uri)
        .bind(json_text(&code.scopes)?)
        .bind(&code.code_challenge)
        .bind(code.charge_limit)
        .bind(code.daily_limit)
        .bind(code.spend_limit)
        .bind(code.created_at)
        .bind(code.expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The code with this hash, whatever its state.
    pub async fn code(&self, code_hash: &str) -> Result<Option<OAuthCode>> {
        let row = sqlx::query(&format!(
            "SELECT {CODE_COLUMNS} FROM oauth_codes WHERE code_hash = $1"
        ))
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(code_from_row).transpose()
    }

    /// Redeems a code for `app_id`, once: marks it used and writes what it
    /// becomes, in one transaction. A second redemption is refused and
    /// revokes what the first made (the code leaked).
    ///
    /// A plain key (the keyless flow) counts against the user's `max_keys`;
    /// a token replaces the user's earlier grants to the app (so limits are
    /// one set per app and user, not one per consent).
    pub async fn redeem_code(
        &self,
        code_hash: &str,
        app_id: i64,
        redemption: &Redemption,
        max_keys: i64,
    ) -> Result<Result<OAuthCode, CodeRefusal>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let claimed = sqlx::query(
            "UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL \
             AND expires_at > $1 AND app_id = $3",
        )
        .bind(now)
        .bind(code_hash)
        .bind(app_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {CODE_COLUMNS} FROM oauth_codes WHERE code_hash = $1"
        ))
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(code) = row.as_ref().map(code_from_row).transpose()? else {
            return Ok(Err(CodeRefusal::Unknown));
        };
        if claimed.rows_affected() == 0 {
            let refusal = if code.app_id != app_id {
                CodeRefusal::OtherClient
            } else if code.used_at.is_some() {
                revoke(&mut tx, Grants::FromCode(code_hash)).await?;
                // A key the keyless flow made of it goes too.
                sqlx::query(
                    "UPDATE api_keys SET is_disabled = 1, key_hash = 'revoked:' || id, \
                     revision = revision + 1 WHERE id = \
                     (SELECT key_id FROM oauth_codes WHERE code_hash = $1)",
                )
                .bind(code_hash)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(Err(CodeRefusal::Reused));
            } else {
                CodeRefusal::Expired
            };
            return Ok(Err(refusal));
        }
        match redemption {
            Redemption::Token {
                grant_id,
                token_hash,
                token_last4,
                key,
            } => {
                revoke(&mut tx, Grants::OfAppUser(code.app_id, code.user_id)).await?;
                if let Some(key) = key {
                    insert_key_row(&mut tx, key, Some(grant_id)).await?;
                }
                sqlx::query(
                    "INSERT INTO oauth_grants (id, app_id, user_id, code_hash, token_hash, \
                     token_last4, scopes, charge_limit, daily_limit, key_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(grant_id)
                .bind(code.app_id)
                .bind(code.user_id)
                .bind(code_hash)
                .bind(token_hash)
                .bind(token_last4)
                .bind(json_text(&code.scopes)?)
                .bind(code.charge_limit)
                .bind(code.daily_limit)
                .bind(key.as_ref().map(|k| k.id.clone()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            Redemption::Key(key) => {
                // The user's row first: its lock makes the count exact.
                sqlx::query("UPDATE users SET id = id WHERE id = $1")
                    .bind(code.user_id)
                    .execute(&mut *tx)
                    .await?;
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND grant_id IS NULL",
                )
                .bind(code.user_id)
                .fetch_one(&mut *tx)
                .await?;
                if count >= max_keys {
                    return Err(StoreError::Conflict(format!(
                        "this user already holds the maximum of {max_keys} API keys"
                    )));
                }
                insert_key_row(&mut tx, key, None).await?;
                sqlx::query("UPDATE oauth_codes SET key_id = $1 WHERE code_hash = $2")
                    .bind(&key.id)
                    .bind(code_hash)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Ok(code))
    }

    /// A user's codes not yet exchanged nor expired.
    pub async fn open_codes(&self, user_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM oauth_codes WHERE user_id = $1 AND used_at IS NULL \
             AND expires_at > $2",
        )
        .bind(user_id)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Codes past their expiry are deleted (used ones a day later, so that
    /// a late replay is still recognised as one).
    pub async fn sweep_codes(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
            .bind(now_ms() - 86_400_000)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    /// The live grant with this token hash, and its app.
    pub async fn grant_by_token(&self, token_hash: &str) -> Result<Option<(Grant, OAuthApp)>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants g \
             WHERE g.token_hash = $1 AND g.revoked_at IS NULL"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let grant = grant_from_row(&row)?;
        let app = self.app_by_id(grant.app_id).await?;
        Ok(Some((grant, app)))
    }

    /// Revokes a grant of `user_id` (the user or the app on their behalf):
    /// its token and API key stop working. Returns the key's id.
    pub async fn revoke_grant(&self, grant_id: &str, user_id: i64) -> Result<Option<String>> {
        let mut tx = self.writer.begin().await?;
        let key: Option<Option<String>> = sqlx::query_scalar(
            "SELECT key_id FROM oauth_grants WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(grant_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else {
            return Err(StoreError::NotFound("connected app"));
        };
        revoke(&mut tx, Grants::One(grant_id)).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// A user's live grants, with each app and what it charged.
    pub async fn connections(&self, user_id: i64) -> Result<Vec<Connection>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS}, a.client_id, a.name AS app_name, a.homepage, \
             CAST(COALESCE((SELECT SUM(c.amount) FROM oauth_charges c WHERE c.grant_id = g.id), 0) AS BIGINT) AS charged, \
             (SELECT COUNT(*) FROM oauth_charges c WHERE c.grant_id = g.id) AS charges \
             FROM oauth_grants g JOIN oauth_apps a ON a.id = g.app_id \
             WHERE g.user_id = $1 AND g.revoked_at IS NULL ORDER BY g.created_at, g.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Connection {
                    grant: grant_from_row(row)?,
                    client_id: row.try_get("client_id")?,
                    app_name: row.try_get("app_name")?,
                    homepage: row.try_get("homepage")?,
                    charged: row.try_get("charged")?,
                    charges: row.try_get("charges")?,
                })
            })
            .collect()
    }

    /// What each of an owner's apps earned.
    pub async fn earnings(&self, owner_id: i64) -> Result<Vec<Earnings>> {
        let rows = sqlx::query(
            "SELECT a.client_id, a.name, COUNT(c.id) AS charges, \
             CAST(COALESCE(SUM(c.amount), 0) AS BIGINT) AS charged, \
             CAST(COALESCE(SUM(c.fee), 0) AS BIGINT) AS fees, \
             COUNT(DISTINCT c.user_id) AS users \
             FROM oauth_apps a LEFT JOIN oauth_charges c ON c.app_id = a.id \
             WHERE a.owner_id = $1 GROUP BY a.id, a.client_id, a.name ORDER BY a.id",
        )
        .bind(owner_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let charged: i64 = row.try_get("charged")?;
                let fees: i64 = row.try_get("fees")?;
                Ok(Earnings {
                    client_id: row.try_get("client_id")?,
                    app_name: row.try_get("name")?,
                    charges: row.try_get("charges")?,
                    charged,
                    fees,
                    earned: charged - fees,
                    users: row.try_get("users")?,
                })
            })
            .collect()
    }

    /// The newest charges to a user, each with its app's name (`app #ID`
    /// once the app is deleted).
    pub async fn charges_to_user(&self, user_id: i64, limit: i64) -> Result<Vec<(Charge, String)>> {
        let rows = sqlx::query(
            "SELECT c.*, a.name AS app_name FROM oauth_charges c \
             LEFT JOIN oauth_apps a ON a.id = c.app_id \
             WHERE c.user_id = $1 ORDER BY c.id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let charge = charge_from_row(row)?;
                let name: Option<String> = row.try_get("app_name")?;
                let name = name.unwrap_or_else(|| format!("app #{}", charge.app_id));
                Ok((charge, name))
            })
            .collect()
    }

    /// Charges a fee to the grant's user for its app, exactly once per
    /// idempotency key, within the approved limits and the paid balance;
    /// the app's owner is credited `amount - fee`. One transaction.
    pub async fn oauth_charge(&self, charge: &NewCharge) -> Result<ChargeOutcome> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        // Writing first takes SQLite's write lock, and PostgreSQL's lock on
        // the grant's row: concurrent charges of one grant run one by one,
        // so each sees the ones before it in today's total.
        let locked = sqlx::query(
            "UPDATE oauth_grants SET used_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             AND app_id IN (SELECT id FROM oauth_apps WHERE is_suspended = 0)",
        )
        .bind(now)
        .bind(&charge.grant_id)
        .execute(&mut *tx)
        .await?;
        if locked.rows_affected() == 0 {
            return Ok(ChargeOutcome::Revoked);
        }
        let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_grants g WHERE g.id = $1");
        let grant = grant_from_row(
            &sqlx::query(&sql)
                .bind(&charge.grant_id)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        let sql = format!(
            "SELECT {CHARGE_COLUMNS} FROM oauth_charges \
             WHERE app_id = $1 AND user_id = $2 AND idempotency_key = $3"
        );
        let earlier = sqlx::query(&sql)
            .bind(grant.app_id)
            .bind(grant.user_id)
            .bind(&charge.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = earlier {
            return Ok(replay(charge_from_row(&row)?, charge.amount));
        }
        let day = day_of(now);
        // Every charge of the app to the user today, whichever grant made
        // it (a new consent replaces the grant, not the day's total).
        let today: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM oauth_charges \
             WHERE app_id = $1 AND user_id = $2 AND day = $3",
        )
        .bind(grant.app_id)
        .bind(grant.user_id)
        .bind(day)
        .fetch_one(&mut *tx)
        .await?;
        let left_today = grant.daily_limit.saturating_sub(today).max(0);
        if charge.amount > grant.charge_limit {
            return Ok(ChargeOutcome::OverLimit {
                per_charge: true,
                left_today,
            });
        }
        if charge.amount > left_today {
            return Ok(ChargeOutcome::OverLimit {
                per_charge: false,
                left_today,
            });
        }
        let app_owner: i64 = sqlx::query_scalar("SELECT owner_id FROM oauth_apps WHERE id = $1")
            .bind(grant.app_id)
            .fetch_one(&mut *tx)
            .await?;
        // Paid balance only (promotional credit is for the gateway's own
        // services), and never what in-flight requests hold.
        let sql = format!(
            "UPDATE users SET balance = balance - $1, revision = revision + 1 \
             WHERE id = $2 AND balance >= $1 AND balance + free_balance - held >= $1 \
             RETURNING {USER_COLUMNS}"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(charge.amount)
            .bind(grant.user_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(ChargeOutcome::Insufficient);
        };
        let payer = user_from_row(&row)?;
        let sql = format!(
            "INSERT INTO oauth_charges (app_id, grant_id, user_id, owner_id, idempotency_key, \
             amount, fee, description, day, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {CHARGE_COLUMNS}"
        );
        let saved = charge_from_row(
            &sqlx::query(&sql)
                .bind(grant.app_id)
                .bind(&grant.id)
                .bind(grant.user_id)
                .bind(app_owner)
                .bind(&charge.idempotency_key)
                .bind(charge.amount)
                .bind(charge.fee)
                .bind(&charge.description)
                .bind(day)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        let reason = format!("{}: {}", charge.app_label, charge.description);
        ledger_entry(
            &mut tx,
            grant.user_id,
            -charge.amount,
            payer.balance + payer.free_balance,
            "app_charge",
            &reason,
            &format!("oauth-charge:{}", saved.id),
        )
        .await?;
        let earned = charge.amount - charge.fee;
        if earned > 0 {
            let sql = format!(
                "UPDATE users SET balance = balance + $1, revision = revision + 1 WHERE id = $2 \
                 RETURNING {USER_COLUMNS}"
            );
            let owner = user_from_row(
                &sqlx::query(&sql)
                    .bind(earned)
                    .bind(app_owner)
                    .fetch_one(&mut *tx)
                    .await?,
            )?;
            let reason = format!(
                "{}: earned from charge #{} to user {} ({})",
                charge.app_label, saved.id, grant.user_id, charge.description
            );
            ledger_entry(
                &mut tx,
                app_owner,
                earned,
                owner.balance + owner.free_balance,
                "app_earning",
                &reason,
                &format!("oauth-earning:{}", saved.id),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ChargeOutcome::Charged {
            charge: saved,
            balance_after: payer.balance + payer.free_balance,
        })
    }

    /// The charge an app made to a user under an idempotency key.
    pub async fn charge_by_key(
        &self,
        app_id: i64,
        user_id: i64,
        idempotency_key: &str,
    ) -> Result<Option<Charge>> {
        let sql = format!(
            "SELECT {CHARGE_COLUMNS} FROM oauth_charges \
             WHERE app_id = $1 AND user_id = $2 AND idempotency_key = $3"
        );
        let row = sqlx::query(&sql)
            .bind(app_id)
            .bind(user_id)
            .bind(idempotency_key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(charge_from_row).transpose()
    }

    /// The user's management key: their oldest admin-capable key.
    pub async fn management_key(&self, user_id: i64) -> Result<Option<crate::ApiKey>> {
        let keys = self.list_keys(user_id).await?;
        Ok(keys.into_iter().find(|k| k.is_admin))
    }

    /// Replaces the user's management key with `new` (admin-capable) in one
    /// transaction; without one, `new` becomes it.
    pub async fn rotate_management_key(&self, user_id: i64, new: &NewKey) -> Result<crate::ApiKey> {
        let mut tx = self.writer.begin().await?;
        // The user's row first: concurrent rotations run one by one, each
        // replacing the key the one before it made.
        sqlx::query("UPDATE users SET id = id WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let old: Option<String> = sqlx::query_scalar(
            "SELECT id FROM api_keys WHERE user_id = $1 AND is_admin = 1 AND grant_id IS NULL \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(old) = old {
            sqlx::query("DELETE FROM api_keys WHERE id = $1")
                .bind(&old)
                .execute(&mut *tx)
                .await?;
        }
        insert_key_row(&mut tx, new, None).await?;
        tx.commit().await?;
        self.get_key(&new.id).await
    }
}

/// Which live grants to revoke.
#[derive(Clone, Copy)]
enum Grants<'a> {
    OfApp(i64),
    OfAppUser(i64, i64),
    FromCode(&'a str),
    One(&'a str),
}

/// Revokes live grants: each is marked, its API key disabled and given a
/// hash no token has.
async fn revoke(tx: &mut Tx<'_>, which: Grants<'_>) -> Result<()> {
    let live = "SELECT id FROM oauth_grants WHERE revoked_at IS NULL AND ";
    let ids: Vec<String> = match which {
        Grants::OfApp(app_id) => {
            sqlx::query_scalar(&format!("{live}app_id = $1"))
                .bind(app_id)
                .fetch_all(&mut **tx)
                .await?
        }
        Grants::OfAppUser(app_id, user_id) => {
            sqlx::query_scalar(&format!("{live}app_id = $1 AND user_id = $2"))
                .bind(app_id)
                .bind(user_id)
                .fetch_all(&mut **tx)
                .await?
        }
        Grants::FromCode(code_hash) => {
            sqlx::query_scalar(&format!("{live}code_hash = $1"))
                .bind(code_hash)
                .fetch_all(&mut **tx)
                .await?
        }
        Grants::One(id) => {
            sqlx::query_scalar(&format!("{live}id = $1"))
                .bind(id)
                .fetch_all(&mut **tx)
                .await?
        }
    };
    let now = now_ms();
    for id in ids {
        sqlx::query(
            "UPDATE api_keys SET is_disabled = 1, key_hash = 'revoked:' || id, \
             revision = revision + 1 WHERE grant_id = $1",
        )
        .bind(&id)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE oauth_grants SET revoked_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn ledger_entry(
    tx: &mut Tx<'_>,
    user_id: i64,
    amount: i64,
    balance_after: i64,
    kind: &str,
    reason: &str,
    request_id: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO ledger (user_id, amount, balance_after, kind, reason, request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(user_id)
    .bind(amount)
    .bind(balance_after)
    .bind(kind)
    .bind(reason)
    .bind(request_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
