//! Administration commands: they act on the database directly, with the same
//! library functions the admin API uses.

use clap::{Args, Subcommand};
use gateway::accounts::{
    change_balance, create_key, create_user, key_json, update_key, update_user, user_json,
    KeyOptions,
};
use gateway::config::Config;
use gateway::limits::fields as limit_fields;
use gateway::money::{parse_amount, Unit};
use gateway::time::parse_timestamp;
use store::{KeyUpdate, NewUser, RateLimits, RateLimitsUpdate, Store, UsageFilter, UserUpdate};

/// Rate limits on a user or a key: a whole number, or `none` to remove one.
#[derive(Args, Debug, Default)]
pub struct LimitArgs {
    /// Requests per minute (`none`: no limit).
    #[arg(long, value_name = "N|none")]
    pub rpm: Option<String>,
    /// Tokens per minute, input and output (`none`: no limit).
    #[arg(long, value_name = "N|none")]
    pub tpm: Option<String>,
    /// Requests at once (`none`: no limit).
    #[arg(long, value_name = "N|none")]
    pub concurrency: Option<String>,
}

impl LimitArgs {
    fn read(&self, name: &str) -> Option<Result<Option<i64>, String>> {
        let text = match name {
            "rpm" => self.rpm.as_deref(),
            "tpm" => self.tpm.as_deref(),
            _ => self.concurrency.as_deref(),
        }?;
        Some(limit_fields::parse_text(name, text).map_err(|e| e.to_string()))
    }

    /// The limits of something new: those given.
    fn limits(&self) -> Result<RateLimits, String> {
        let read = |name| self.read(name).transpose().map(Option::flatten);
        Ok(RateLimits {
            rpm: read("rpm")?,
            tpm: read("tpm")?,
            concurrency: read("concurrency")?,
        })
    }

    /// A change: those given are set (or removed by `none`), the others stay.
    fn update(&self) -> Result<RateLimitsUpdate, String> {
        let read = |name| self.read(name).transpose();
        Ok(RateLimitsUpdate {
            rpm: read("rpm")?,
            tpm: read("tpm")?,
            concurrency: read("concurrency")?,
        })
    }
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; prints its first (admin-capable) API key once.
    Create {
        name: String,
        #[arg(long, default_value = "default")]
        group: String,
        #[arg(long, default_value = "free")]
        tier: String,
        /// Membership expiry (ISO 8601 or Unix seconds).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// A console login: the password is read from TOLLGATE_PASSWORD, else
        /// from the first line of standard input.
        #[arg(long)]
        password: bool,
        /// The e-mail address the user may also log in with.
        #[arg(long)]
        email: Option<String>,
        /// The console's admin pages are open to this user.
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's console password (read as for `create --password`);
    /// their sessions are closed.
    Password { id: i64 },
    /// List users.
    List,
    /// Show one user.
    Show { id: i64 },
    /// Add to a user's balance.
    Credit(AmountArgs),
    /// Take from a user's balance.
    Debit(AmountArgs),
    /// Change a user's group, tier, membership expiry or rate limits.
    Set {
        id: i64,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        /// ISO 8601, Unix seconds, or `never`.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

#[derive(Args)]
pub struct AmountArgs {
    pub id: i64,
    /// Amount in USD (exact to 1e-9).
    #[arg(long, conflicts_with = "credits", required_unless_present = "credits")]
    pub usd: Option<String>,
    /// Amount in credits (credits_per_usd credits = 1 USD).
    #[arg(long)]
    pub credits: Option<String>,
    /// Why: kept in the ledger.
    #[arg(long)]
    pub reason: String,
    /// Use the promotional (free) balance.
    #[arg(long)]
    pub free: bool,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create an API key for a user; prints it once.
    Create {
        user_id: i64,
        #[arg(long, default_value = "")]
        remark: String,
        /// Allow the key to manage the user's other keys.
        #[arg(long)]
        admin: bool,
        /// Comma-separated models the key may use (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Spending limit in credits (0 = unlimited).
        #[arg(long, default_value = "0")]
        max_fee: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Change a key's rate limits (the user's still apply too).
    Set {
        key_id: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List a user's keys (masked).
    List { user_id: i64 },
    /// Delete a key by id.
    Delete { key_id: String },
}

#[derive(Args)]
pub struct UsageArgs {
    pub user_id: i64,
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
}

async fn open(config: &Config) -> Result<Store, String> {
    let store = Store::connect(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    Ok(store)
}

fn print(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn time_arg(text: &str) -> Result<i64, String> {
    parse_timestamp(text)
        .ok_or_else(|| format!("{text:?} is not a time (ISO 8601 or Unix seconds)"))
}

pub async fn user(config: &Config, cmd: UserCommand) -> Result<(), String> {
    let store = open(config).await?;
    match cmd {
        UserCommand::Create {
            name,
            group,
            tier,
            expires,
            limits,
            password,
            email,
            admin,
        } => {
            // Read before anything is created: a bad password creates nothing.
            let hashed = match password {
                true => Some(new_password().await?),
                false => None,
            };
            let new = NewUser {
                name,
                group_name: group,
                tier,
                membership_expires_at: expires.as_deref().map(time_arg).transpose()?,
                limits: limits.limits()?,
            };
            let (user, key, secret) = create_user(&store, config, &new)
                .await
                .map_err(|e| e.to_string())?;
            if hashed.is_some() || email.is_some() || admin {
                store
                    .set_console_access(user.id, email.as_deref(), admin, false)
                    .await
                    .map_err(|e| e.to_string())?;
                store
                    .set_password(user.id, hashed.as_deref(), None)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            print(
                &serde_json::json!({"user": user_json(&user, config), "key": secret, "key_id": key.id}),
            );
            eprintln!("The key above is shown once; only its hash is stored.");
        }
        UserCommand::Password { id } => {
            let hashed = new_password().await?;
            store
                .set_password(id, Some(&hashed), None)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("Password set; the user's console sessions are closed.");
        }
        UserCommand::List => {
            let users = store.list_users().await.map_err(|e| e.to_string())?;
            for u in users {
                print(&user_json(&u, config));
            }
        }
        UserCommand::Show { id } => {
            let u = store.get_user(id).await.map_err(|e| e.to_string())?;
            print(&user_json(&u, config));
        }
        UserCommand::Credit(args) => change(&store, config, args, false).await?,
        UserCommand::Debit(args) => change(&store, config, args, true).await?,
        UserCommand::Set {
            id,
            group,
            tier,
            expires,
            limits,
        } => {
            let expiry = match expires.as_deref() {
                None => None,
                Some("never") | Some("") => Some(None),
                Some(t) => Some(Some(time_arg(t)?)),
            };
            let update = UserUpdate {
                group_name: group,
                tier,
                membership_expires_at: expiry,
                limits: limits.update()?,
            };
            let u = update_user(&store, id, &update)
                .await
                .map_err(|e| e.to_string())?;
            print(&user_json(&u, config));
        }
    }
    store.close().await;
    Ok(())
}

/// The amount of a credit or debit in nano-USD, from `--usd` or `--credits`.
fn amount_nano(config: &Config, args: &AmountArgs) -> Result<i64, String> {
    let parsed = match (&args.usd, &args.credits) {
        (Some(usd), _) => parse_amount("--usd", usd, Unit::Usd, false),
        (None, Some(c)) => {
            parse_amount("--credits", c, Unit::Credits(config.credits_per_usd), false)
        }
        (None, None) => return Err("give --usd or --credits".into()),
    };
    parsed.map_err(|e| e.to_string())
}

async fn change(
    store: &Store,
    config: &Config,
    args: AmountArgs,
    debit: bool,
) -> Result<(), String> {
    let nano = amount_nano(config, &args)?;
    let amount = if debit { -nano } else { nano };
    let u = change_balance(store, args.id, amount, args.free, &args.reason)
        .await
        .map_err(|e| e.to_string())?;
    print(&user_json(&u, config));
    Ok(())
}

pub async fn key(config: &Config, cmd: KeyCommand) -> Result<(), String> {
    let store = open(config).await?;
    match cmd {
        KeyCommand::Create {
            user_id,
            remark,
            admin,
            models,
            max_fee,
            limits,
        } => {
            let max_fee = parse_amount(
                "--max-fee",
                &max_fee,
                Unit::Credits(config.credits_per_usd),
                false,
            )
            .map_err(|e| e.to_string())?;
            let options = KeyOptions {
                remark,
                is_admin: admin,
                permissions: models,
                max_fee,
                expired_at: None,
                limits: limits.limits()?,
            };
            let (key, secret) = create_key(&store, config, user_id, options)
                .await
                .map_err(|e| e.to_string())?;
            print(&serde_json::json!({"key": secret, "info": key_json(&key, config)}));
            eprintln!("The key above is shown once; only its hash is stored.");
        }
        KeyCommand::Set { key_id, limits } => {
            let update = KeyUpdate {
                limits: limits.update()?,
                ..KeyUpdate::default()
            };
            let k = update_key(&store, &key_id, &update)
                .await
                .map_err(|e| e.to_string())?;
            print(&key_json(&k, config));
        }
        KeyCommand::List { user_id } => {
            for k in store.list_keys(user_id).await.map_err(|e| e.to_string())? {
                print(&key_json(&k, config));
            }
        }
        KeyCommand::Delete { key_id } => {
            store.delete_key(&key_id).await.map_err(|e| e.to_string())?;
            println!("deleted {key_id}");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn usage(config: &Config, args: UsageArgs) -> Result<(), String> {
    let store = open(config).await?;
    let filter = UsageFilter {
        user_id: Some(args.user_id),
        limit: args.limit.clamp(1, 1000),
        ..Default::default()
    };
    for r in store.list_usage(&filter).await.map_err(|e| e.to_string())? {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    }
    store.close().await;
    Ok(())
}

/// A console password from TOLLGATE_PASSWORD or standard input, checked and
/// hashed (argon2id).
async fn new_password() -> Result<String, String> {
    let password = match std::env::var("TOLLGATE_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password: {e}"))?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    gateway::console::check_password(&password)?;
    gateway::console::hash_password(password).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(usd: Option<&str>, credits: Option<&str>) -> AmountArgs {
        AmountArgs {
            id: 1,
            usd: usd.map(str::to_string),
            credits: credits.map(str::to_string),
            reason: "test".into(),
            free: false,
        }
    }

    #[test]
    fn amounts_are_exact_or_refused_with_a_clear_error() {
        let config = Config::defaults();
        assert_eq!(
            amount_nano(&config, &args(Some("1.5"), None)),
            Ok(1_500_000_000)
        );
        assert_eq!(
            amount_nano(&config, &args(None, Some("17000"))),
            Ok(500_000_000)
        );
        // Once recorded as a debit of 6.93 billion USD.
        let e = amount_nano(&config, &args(Some("999999999999999999"), None)).unwrap_err();
        assert_eq!(e, "`--usd` is too large: at most 1000000000 USD.");
        let e = amount_nano(&config, &args(None, Some("999999999999999999"))).unwrap_err();
        assert!(e.starts_with("`--credits` is too large"), "{e}");
        let e = amount_nano(&config, &args(Some("-5"), None)).unwrap_err();
        assert!(e.contains("non-negative"), "{e}");
        assert!(amount_nano(&config, &args(None, None)).is_err());
    }

    fn limit_args(rpm: Option<&str>, tpm: Option<&str>, concurrency: Option<&str>) -> LimitArgs {
        LimitArgs {
            rpm: rpm.map(str::to_string),
            tpm: tpm.map(str::to_string),
            concurrency: concurrency.map(str::to_string),
        }
    }

    #[test]
    fn limits_are_set_removed_with_none_or_left_alone() {
        let args = limit_args(Some("60"), Some("none"), None);
        assert_eq!(
            args.limits(),
            Ok(RateLimits {
                rpm: Some(60),
                tpm: None,
                concurrency: None
            })
        );
        assert_eq!(
            args.update(),
            Ok(RateLimitsUpdate {
                rpm: Some(Some(60)),
                tpm: Some(None),
                concurrency: None
            })
        );
        let e = limit_args(None, None, Some("lots")).update().unwrap_err();
        assert!(e.starts_with("`concurrency` must be a whole number"), "{e}");
    }
}

#[derive(Subcommand)]
pub enum PaymentsCommand {
    /// Credit every order Stripe shows paid whose webhook never arrived
    /// (and end expired ones), through the same exactly-once path.
    Reconcile {
        /// How many days back to look (1–90).
        #[arg(long, default_value_t = 3)]
        days: u32,
    },
}

pub async fn payments(config: &Config, cmd: PaymentsCommand) -> Result<(), String> {
    let PaymentsCommand::Reconcile { days } = cmd;
    use gateway::payments::MAX_RECONCILE_DAYS;
    if !(1..=MAX_RECONCILE_DAYS).contains(&days) {
        return Err(format!("--days must be between 1 and {MAX_RECONCILE_DAYS}"));
    }
    let payments = gateway::payments::Payments::new(config)
        .ok_or("top-ups are not configured ([payments.stripe])")?;
    let store = open(config).await?;
    let report = payments.reconcile(&store, days).await;
    store.close().await;
    let report = report.map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}
