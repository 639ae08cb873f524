//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): the secret is `whsec_`
//! and the base64 of its key; `webhook-signature` is `v1,` and the base64 HMAC-SHA256 of
//! `{webhook-id}.{webhook-timestamp}.{body}` under that key. Any Standard Webhooks library
//! verifies what this signs (the tests do, with an independent implementation).
use anyhow::{anyhow, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::secret::Secret;

/// How a Standard Webhooks secret starts.
const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a signing key: as long as the HMAC-SHA256 output.
const KEY_BYTES: usize = 32;

/// A new signing secret, `whsec_<base64 of 32 random bytes>`.
pub fn generate_secret() -> Secret {
    let mut key = [0u8; KEY_BYTES];
    rand::thread_rng().fill_bytes(&mut key);
    Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

/// The `webhook-signature` value for one attempt.
pub fn sign(
    secret: &Secret,
    webhook_id: &str,
    timestamp: i64,
    body: &str,
) -> anyhow::Result<String> {
    let encoded = secret
        .expose()
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| anyhow!("a webhook secret starts with {SECRET_PREFIX}"))?;
    let key = STANDARD
        .decode(encoded)
        .context("a webhook secret is base64 after its prefix")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(format!("{webhook_id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries' own tests.
    #[test]
    fn signs_as_the_reference_implementation_does() {
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let signature = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn generated_secrets_differ_and_sign() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        assert!(a.expose().starts_with("whsec_"));
        assert!(sign(&a, "msg_1", 1, "{}").is_ok());
        assert!(sign(&Secret::new("no-prefix"), "msg_1", 1, "{}").is_err());
    }
}
