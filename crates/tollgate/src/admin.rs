//! Administration commands: they act on the database directly, with the same
//! library functions the admin API uses.

use clap::{Args, Subcommand};
use gateway::accounts::{create_key, create_user, key_json, user_json, KeyOptions};
use gateway::config::Config;
use gateway::money::Decimal;
use gateway::time::parse_timestamp;
use store::{BalanceChange, NewUser, Store, UsageFilter, UserUpdate};

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
    },
    /// List users.
    List,
    /// Show one user.
    Show { id: i64 },
    /// Add to a user's balance.
    Credit(AmountArgs),
    /// Take from a user's balance.
    Debit(AmountArgs),
    /// Change a user's group, tier or membership expiry.
    Set {
        id: i64,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        /// ISO 8601, Unix seconds, or `never`.
        #[arg(long)]
        expires: Option<String>,
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
        } => {
            let new = NewUser {
                name,
                group_name: group,
                tier,
                membership_expires_at: expires.as_deref().map(time_arg).transpose()?,
            };
            let (user, key, secret) = create_user(&store, config, &new)
                .await
                .map_err(|e| e.to_string())?;
            print(
                &serde_json::json!({"user": user_json(&user, config), "key": secret, "key_id": key.id}),
            );
            eprintln!("The key above is shown once; only its hash is stored.");
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
            };
            let u = store
                .update_user(id, &update)
                .await
                .map_err(|e| e.to_string())?;
            print(&user_json(&u, config));
        }
    }
    store.close().await;
    Ok(())
}

async fn change(
    store: &Store,
    config: &Config,
    args: AmountArgs,
    debit: bool,
) -> Result<(), String> {
    let nano = match (&args.usd, &args.credits) {
        (Some(usd), _) => Decimal::parse(usd)
            .map_err(|e| e.to_string())?
            .usd_to_nano(),
        (None, Some(c)) => Decimal::parse(c)
            .map_err(|e| e.to_string())?
            .credits_to_nano(config.credits_per_usd),
        (None, None) => return Err("give --usd or --credits".into()),
    };
    if nano == 0 {
        return Err("the amount must not be zero".into());
    }
    let change = BalanceChange {
        user_id: args.id,
        amount: if debit { -nano } else { nano },
        free: args.free,
        reason: args.reason,
    };
    let u = store
        .change_balance(&change)
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
        } => {
            let max_fee = Decimal::parse(&max_fee)
                .map_err(|e| e.to_string())?
                .credits_to_nano(config.credits_per_usd);
            let options = KeyOptions {
                remark,
                is_admin: admin,
                permissions: models,
                max_fee,
                expired_at: None,
            };
            let (key, secret) = create_key(&store, config, user_id, options)
                .await
                .map_err(|e| e.to_string())?;
            print(&serde_json::json!({"key": secret, "info": key_json(&key, config)}));
            eprintln!("The key above is shown once; only its hash is stored.");
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
        user_id: args.user_id,
        limit: args.limit.clamp(1, 1000),
        ..Default::default()
    };
    for r in store.list_usage(&filter).await.map_err(|e| e.to_string())? {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    }
    store.close().await;
    Ok(())
}
