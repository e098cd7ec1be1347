//! The web console (`[console]`): who may sign up, and with what.

use serde::Deserialize;

use super::models::DecimalValue;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signup {
    /// Accounts are made by the operator (CLI, admin API or pages).
    #[default]
    Closed,
    /// Anyone may make an account.
    Open,
    /// Anyone with one of `invite_codes`.
    Invite,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub signup: Signup,
    /// Codes that open sign-up when `signup = "invite"` (literals or
    /// `env:VAR`); each may be used by many.
    pub invite_codes: Vec<String>,
    /// USD a new account starts with, on its free balance.
    pub signup_free_usd: DecimalValue,
    /// The group new accounts join.
    pub signup_group: String,
    /// Most accounts sign-up makes per hour on one instance (all addresses
    /// together; each address gets at most 3).
    pub signups_per_hour: u32,
    /// Proxies in front of the gateway that append the client's address to
    /// `X-Forwarded-For`: 0 (default) takes the connection's own address,
    /// N the N-th address from the right of the header (a client can write
    /// what it likes to its left).
    pub forwarded_hops: usize,
    /// Session cookies are always `Secure` (else only when the request came
    /// over HTTPS, as `X-Forwarded-Proto: https` says).
    pub secure_cookies: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            signup: Signup::Closed,
            invite_codes: Vec::new(),
            signup_free_usd: DecimalValue::Int(0),
            signup_group: "default".into(),
            signups_per_hour: 30,
            forwarded_hops: 0,
            secure_cookies: false,
        }
    }
}

impl ConsoleConfig {
    /// The free balance a new account starts with, nano-USD (checked at load).
    pub fn signup_free_nano(&self) -> Option<i64> {
        self.signup_free_usd.to_decimal().ok()?.usd_to_nano()
    }
}
