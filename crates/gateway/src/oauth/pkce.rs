//! PKCE (RFC 7636), S256 only: `plain` sends the secret itself through the
//! browser, so it protects nothing and is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Checks a challenge sent to the authorize page: method S256 and a
/// 43-character base64url value (a SHA-256).
pub fn check_challenge(challenge: &str, method: Option<&str>) -> Result<(), String> {
    match method {
        Some("S256") => {}
        Some("plain") | None => {
            return Err("code_challenge_method must be S256 (plain is not accepted)".to_string())
        }
        Some(other) => return Err(format!("unknown code_challenge_method `{other}`")),
    }
    let decoded = URL_SAFE_NO_PAD.decode(challenge).ok();
    if challenge.len() != 43 || decoded.is_none_or(|d| d.len() != 32) {
        return Err("code_challenge must be the base64url SHA-256 of the verifier".to_string());
    }
    Ok(())
}

/// Whether `verifier` (43–128 unreserved characters) hashes to `challenge`.
pub fn verifies(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    crate::secrets::hashes_equal(&computed, challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_verifies() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(check_challenge(challenge, Some("S256")).is_ok());
        assert!(verifies(verifier, challenge));
        assert!(!verifies(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            challenge
        ));
        assert!(!verifies(challenge, challenge));
        assert!(!verifies("short", challenge));
    }

    #[test]
    fn plain_and_malformed_challenges_are_refused() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(check_challenge(challenge, Some("plain")).is_err());
        assert!(check_challenge(challenge, None).is_err());
        assert!(check_challenge("abc", Some("S256")).is_err());
        assert!(check_challenge(&"!".repeat(43), Some("S256")).is_err());
    }
}
