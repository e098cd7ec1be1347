//! What an OAuth app may do for a user: one scope per capability, each
//! gating its routes. A token has the scopes its user approved, which are
//! at most those its app registered.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read the user's id and e-mail.
    UserInfo,
    /// Read the user's balance.
    Balance,
    /// Charge the user's balance for the app's own services.
    Charge,
    /// Open recharge (top-up) orders for the user.
    Recharge,
    /// Call the gateway's model APIs, billed to the user.
    Api,
    /// Read and rotate the user's management (admin-capable) key.
    ManagementKey,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::UserInfo,
        Scope::Balance,
        Scope::Charge,
        Scope::Recharge,
        Scope::Api,
        Scope::ManagementKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UserInfo => "user_info",
            Scope::Balance => "balance",
            Scope::Charge => "charge",
            Scope::Recharge => "recharge",
            Scope::Api => "api",
            Scope::ManagementKey => "management_key",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// What the consent page says the scope allows.
    pub fn describe(self) -> &'static str {
        match self {
            Scope::UserInfo => "See your user id and e-mail address",
            Scope::Balance => "See your balance",
            Scope::Charge => "Charge your balance for its services, within the limits below",
            Scope::Recharge => "Open top-up orders for you to pay",
            Scope::Api => "Use the models with your balance, up to the spending limit below",
            Scope::ManagementKey => {
                "Read and replace your management key: the new key, which can manage all \
                 your API keys, is given to the app and stays valid until you delete it"
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope list as written (spaces or commas between names): every name
/// known, no repeats, in a stable order.
pub fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for name in text.split([' ', ',', '+']).filter(|s| !s.is_empty()) {
        let scope = Scope::parse(name).ok_or_else(|| {
            format!(
                "unknown scope `{name}` (known: {})",
                Scope::ALL.map(Scope::as_str).join(", ")
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes.sort();
    Ok(scopes)
}

/// Scopes as stored (their names).
pub fn names(scopes: &[Scope]) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_string()).collect()
}

/// Stored names back to scopes (unknown names, from a later version, drop).
pub fn from_names(names: &[String]) -> Vec<Scope> {
    names.iter().filter_map(|n| Scope::parse(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_spaces_or_commas_and_refuse_unknown_names() {
        assert_eq!(
            parse_list("charge user_info,charge  api").unwrap(),
            vec![Scope::UserInfo, Scope::Charge, Scope::Api]
        );
        assert!(parse_list("user_info admin").unwrap_err().contains("admin"));
        assert_eq!(parse_list("").unwrap(), vec![]);
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
    }
}
