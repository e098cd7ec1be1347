//! API keys and tokens: generation and hashing. A secret is shown once, when
//! created; only its SHA-256 hash is stored.

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Length of the random part of a key (≈ 286 bits of entropy).
const KEY_RANDOM_LEN: usize = 48;

/// A fresh user API key: `sk-` followed by 48 alphanumerics.
pub fn new_api_key() -> String {
    format!("sk-{}", random_alphanumeric(KEY_RANDOM_LEN))
}

/// A fresh admin token.
pub fn new_admin_token() -> String {
    format!("tg-admin-{}", random_alphanumeric(KEY_RANDOM_LEN))
}

/// A stable, public id for a key.
pub fn new_key_id() -> String {
    format!("key_{}", random_hex(8))
}

/// A unique request id: `req_`, the time in milliseconds (12 hex digits)
/// and 10 random bytes. Ids made later sort later, so the indexes keyed by
/// them (the usage records' primary key, the ledger's unique request id)
/// grow at their right edge: a settlement batch dirties a page or two of
/// each instead of one random page per request, which the database
/// writes to its log and copies again at every checkpoint.
///
/// Two requests with the same id would be charged once, so the random part
/// stays wide: 80 bits, among the ids of one millisecond of every instance
/// sharing a database (at 100,000 requests a second, a collision is
/// expected once in ~10¹⁰ years).
pub fn new_request_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // 48 bits of milliseconds last until the year 10889.
    format!("req_{:012x}{}", millis & 0xffff_ffff_ffff, random_hex(10))
}

/// An id for a stored object, e.g. `resp_…`, `conv_…`, `msg_…`: the prefix
/// and 24 random bytes, so that ids cannot be guessed.
pub fn new_object_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_hex(24))
}

/// The prefix of OAuth tokens (OhMyGPT's).
pub const OAUTH_TOKEN_PREFIX: &str = "omg-oat-v1-";

/// An OAuth app's public id: 24 hex characters.
pub fn new_client_id() -> String {
    random_hex(12)
}

/// An OAuth app's secret, an authorization code, an OAuth token.
pub fn new_client_secret() -> String {
    random_alphanumeric(40)
}

pub fn new_oauth_code() -> String {
    random_alphanumeric(40)
}

pub fn new_oauth_token() -> String {
    format!(
        "{OAUTH_TOKEN_PREFIX}{}",
        random_alphanumeric(KEY_RANDOM_LEN)
    )
}

pub fn hash_secret(secret: &str) -> String {
    lower_hex(&Sha256::digest(secret.as_bytes()))
}

/// `bytes` in lowercase hex, through a table (`hex::encode` builds its
/// string a `char` at a time: most of what hashing a key for the auth
/// cache cost, on every request).
fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    match hex::encode_to_slice(bytes, &mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        // Only for an output of the wrong length, which `out` is not.
        Err(_) => hex::encode(bytes),
    }
}

/// Compares two hashes in constant time.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill(&mut buf[..]);
    lower_hex(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_hex_is_hex_encode() {
        for bytes in [&b""[..], b"\x00", b"\x01\xab\xff", &[0x5a; 33]] {
            assert_eq!(lower_hex(bytes), hex::encode(bytes));
        }
    }

    #[test]
    fn keys_are_unique_and_well_formed() {
        let a = new_api_key();
        assert!(a.starts_with("sk-") && a.len() == 51);
        assert_ne!(a, new_api_key());
        assert_eq!(hash_secret(&a).len(), 64);
        assert!(hashes_equal(&hash_secret(&a), &hash_secret(&a)));
        assert!(!hashes_equal(&hash_secret(&a), &hash_secret("x")));
    }

    #[test]
    fn request_ids_are_unique_and_sort_by_time() {
        let first = new_request_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later: Vec<String> = (0..1000).map(|_| new_request_id()).collect();
        let distinct: std::collections::HashSet<&String> = later.iter().collect();
        assert_eq!(distinct.len(), later.len());
        for id in &later {
            assert!(id.starts_with("req_") && id.len() == 36, "{id}");
            assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert!(*id > first, "{id} made after {first} sorts before it");
        }
    }
}
