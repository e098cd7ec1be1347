//! Console passwords: argon2id (the crate's defaults: 19 MiB, 2 passes),
//! a fresh salt each; hashing runs off the async threads, it is meant to be
//! slow.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest and longest password accepted.
pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

/// Why a password is refused, in words for the person choosing it.
pub fn check(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(format!("A password has at least {MIN_LEN} characters."));
    }
    if chars > MAX_LEN {
        return Err(format!("A password has at most {MAX_LEN} characters."));
    }
    Ok(())
}

/// The PHC string of `password`'s argon2id hash.
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Whether `password` is the one `hash` was made from.
pub async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify_only_themselves() {
        let hashed = hash("correct horse".into()).await.unwrap();
        assert!(hashed.starts_with("$argon2id$"), "{hashed}");
        assert!(verify("correct horse".into(), hashed.clone()).await);
        assert!(!verify("correct horsE".into(), hashed.clone()).await);
        assert!(!verify("x".into(), "not a hash".into()).await);
        let again = hash("correct horse".into()).await.unwrap();
        assert_ne!(hashed, again, "a fresh salt each time");
        assert!(check("short").is_err());
        assert!(check(&"x".repeat(257)).is_err());
        assert!(check("long enough").is_ok());
    }
}
