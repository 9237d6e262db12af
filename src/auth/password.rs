//! Argon2id password hashing, run off the async executor. Unknown users are checked against a
//! dummy hash so that timing does not reveal which usernames exist.

use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted anywhere.
pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 256;

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_blocking("dummy password for timing").unwrap_or_default());

fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

fn verify_blocking(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Hashes with Argon2id (the crate's default algorithm and OWASP-recommended parameters).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await?
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
}

/// Verifies `password` against `hash`, or against a dummy hash when there is no user, so both
/// paths cost the same.
pub async fn verify(hash: Option<String>, password: String) -> bool {
    let known = hash.is_some();
    let result = tokio::task::spawn_blocking(move || {
        let h = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        verify_blocking(&h, &password)
    })
    .await
    .unwrap_or(false);
    known && result
}

/// A random password for `operator create` without stdin: 20 characters, unambiguous alphabet.
pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..20).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_is_argon2id_and_verifies() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(Some(h.clone()), "correct horse battery".into()).await);
        assert!(!verify(Some(h), "wrong".into()).await);
        assert!(!verify(None, "dummy password for timing".into()).await);
    }
}
