//! Making an account that can log in to the console, the one way sign-up,
//! the first-start setup and the admin's users page all use: the name,
//! e-mail and password checked, the password hashed (argon2id), the user
//! made through the same service as the admin API, then given its login.

use super::{password, Texts};
use crate::state::App;

pub struct NewLogin<'a> {
    pub name: &'a str,
    /// Empty: none.
    pub email: &'a str,
    pub password: &'a str,
    pub group: &'a str,
    pub is_admin: bool,
}

/// A user name: 1 to 64 letters, digits, `.`, `-` or `_`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Makes the account; the error is for the form's page, in `t`'s language.
pub async fn create(app: &App, t: &Texts, new: NewLogin<'_>) -> Result<store::User, String> {
    let name = new.name.trim();
    if !valid_name(name) {
        return Err(t.bad_name.into());
    }
    let email = Some(new.email.trim()).filter(|e| !e.is_empty());
    if email.is_some_and(|e| !e.contains('@') || e.len() > 254) {
        return Err(t.bad_email.into());
    }
    password::check(new.password)?;
    // A taken e-mail is refused before anything is made.
    if let Some(email) = email {
        match app.store.login_of(email).await {
            Ok(_) => return Err(t.email_taken.into()),
            Err(store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let hashed = password::hash(new.password.to_string())
        .await
        .map_err(|_| t.try_again.to_string())?;
    let user = store::NewUser {
        name: name.to_string(),
        group_name: new.group.trim().to_string(),
        tier: "free".into(),
        membership_expires_at: None,
        limits: Default::default(),
    };
    let (user, _, _) = crate::accounts::create_user(&app.store, &app.config, &user)
        .await
        .map_err(|e| e.to_string())?;
    let login = async {
        app.store
            .set_console_access(user.id, email, new.is_admin, false)
            .await?;
        app.store.set_password(user.id, Some(&hashed), None).await
    }
    .await;
    login.map_err(|e| e.to_string())?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        assert!(valid_name("alice.b-2_x"));
        assert!(valid_name("张三"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("<script>"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
