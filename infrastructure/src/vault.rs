//! The token vault (ARCHITECTURE invariant 5): tokens are sealed with XChaCha20-Poly1305 under a
//! key from configuration; the associated data binds each ciphertext to its connection, so a row
//! copied onto another connection does not decrypt.
use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Context};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use herald_domain::ConnectionId;
use rand::RngCore;
use sqlx::Row;

use crate::db::{millis, Db};
use crate::platforms::TokenGrant;

/// Length of a vault key in bytes.
pub const KEY_LEN: usize = 32;

/// Encrypts and decrypts with one key; also used for other short-lived secrets (PKCE verifiers).
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    key_id: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl Sealer {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        let cipher = XChaCha20Poly1305::new_from_slice(key).expect("32-byte key");
        // The key id names the key without revealing it, so rotation can tell rows apart.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(key);
        let key_id = hex_prefix(&digest[..6]);
        Self { cipher, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Returns (nonce, ciphertext) for `plaintext` bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        (nonce.to_vec(), ciphertext)
    }

    /// Seals a short secret into one printable string (base64 of nonce and ciphertext), for
    /// secrets that travel inside an event, such as an upload session handle.
    pub fn seal_to_string(&self, aad: &[u8], plaintext: &str) -> String {
        use base64::Engine as _;
        let (mut sealed, ciphertext) = self.seal(aad, plaintext.as_bytes());
        sealed.extend_from_slice(&ciphertext);
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sealed)
    }

    /// Opens what `seal_to_string` sealed with the same `aad`.
    pub fn open_string(&self, aad: &[u8], sealed: &str) -> anyhow::Result<String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(sealed)
            .map_err(|_| anyhow!("sealed value is not base64"))?;
        if bytes.len() < 24 {
            return Err(anyhow!("sealed value is too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        String::from_utf8(self.open(aad, nonce, ciphertext)?)
            .map_err(|_| anyhow!("sealed value is not text"))
    }

    pub fn open(&self, aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let nonce =
            XNonce::try_from(nonce).map_err(|_| anyhow!("stored nonce has the wrong length"))?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| anyhow!("vault entry does not decrypt with this key and connection"))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Token storage per connection.
#[derive(Debug, Clone)]
pub struct Vault {
    db: Db,
    sealer: Sealer,
}

impl Vault {
    pub fn new(db: Db, sealer: Sealer) -> Self {
        Self { db, sealer }
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    fn aad(connection_id: &ConnectionId) -> Vec<u8> {
        format!("herald-vault:v1:{connection_id}").into_bytes()
    }

    /// Stores (or replaces) the tokens of a connection.
    #[tracing::instrument(skip(self, grant))]
    pub async fn store(
        &self,
        connection_id: &ConnectionId,
        grant: &TokenGrant,
    ) -> anyhow::Result<()> {
        let plaintext = serde_json::to_vec(grant).context("serializing tokens")?;
        let (nonce, ciphertext) = self.sealer.seal(&Self::aad(connection_id), &plaintext);
        sqlx::query(
            "INSERT INTO token_vault (connection_id, nonce, ciphertext, key_id, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (connection_id) DO UPDATE SET nonce = excluded.nonce,
                ciphertext = excluded.ciphertext, key_id = excluded.key_id,
                updated_at_ms = excluded.updated_at_ms",
        )
        .bind(connection_id.to_string())
        .bind(nonce)
        .bind(ciphertext)
        .bind(self.sealer.key_id().to_string())
        .bind(millis(chrono::Utc::now()))
        .execute(&self.db.any)
        .await
        .context("writing the vault entry")?;
        Ok(())
    }

    /// The tokens of a connection, if any.
    #[tracing::instrument(skip(self))]
    pub async fn load(&self, connection_id: &ConnectionId) -> anyhow::Result<Option<TokenGrant>> {
        let row = sqlx::query("SELECT nonce, ciphertext FROM token_vault WHERE connection_id = $1")
            .bind(connection_id.to_string())
            .fetch_optional(&self.db.any)
            .await
            .context("reading the vault entry")?;
        let Some(row) = row else { return Ok(None) };
        let nonce: Vec<u8> = row.try_get("nonce")?;
        let ciphertext: Vec<u8> = row.try_get("ciphertext")?;
        let plaintext = self
            .sealer
            .open(&Self::aad(connection_id), &nonce, &ciphertext)?;
        Ok(Some(
            serde_json::from_slice(&plaintext).context("decoding tokens")?,
        ))
    }

    /// Deletes the tokens of a connection (disconnect).
    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, connection_id: &ConnectionId) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM token_vault WHERE connection_id = $1")
            .bind(connection_id.to_string())
            .execute(&self.db.any)
            .await
            .context("deleting the vault entry")?;
        Ok(())
    }
}

/// Parses a base64 (standard) 32-byte key from configuration.
pub fn parse_key(encoded: &str) -> anyhow::Result<[u8; KEY_LEN]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .context("HERALD_VAULT_KEY must be base64")?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("HERALD_VAULT_KEY must decode to exactly 32 bytes"))
}

/// Reads the key file, or creates it with a random key (mode 0600). Returns the key and whether
/// it was generated, so the caller can say so.
pub fn load_or_generate_key(path: &Path) -> anyhow::Result<([u8; KEY_LEN], bool)> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the vault key {}", path.display()))?;
        return Ok((parse_key(&text)?, false));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let encoded = generate_key();
    let key = parse_key(&encoded)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating the vault key {}", path.display()))?;
    file.write_all(encoded.as_bytes())?;
    Ok((key, true))
}

/// A new random key, encoded as `HERALD_VAULT_KEY` takes it (base64 of 32 bytes).
pub fn generate_key() -> String {
    let mut key = [0u8; KEY_LEN];
    rand::thread_rng().fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_associated_data() {
        let sealer = Sealer::new(&[7u8; KEY_LEN]);
        let (nonce, ciphertext) = sealer.seal(b"connection-a", b"access-token-123");
        assert!(!ciphertext.windows(6).any(|w| w == b"access"));
        assert_eq!(
            sealer.open(b"connection-a", &nonce, &ciphertext).unwrap(),
            b"access-token-123"
        );
        assert!(sealer.open(b"connection-b", &nonce, &ciphertext).is_err());
        assert!(Sealer::new(&[8u8; KEY_LEN])
            .open(b"connection-a", &nonce, &ciphertext)
            .is_err());
    }

    #[test]
    fn a_generated_key_file_is_private_and_reloads() {
        let dir = std::env::temp_dir().join(format!("herald-vault-{}", uuid::Uuid::new_v4()));
        let path = dir.join("vault.key");
        let (key, generated) = load_or_generate_key(&path).unwrap();
        assert!(generated);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load_or_generate_key(&path).unwrap(), (key, false));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(parse_key("not base64!").is_err());
        assert!(parse_key("AAAA").is_err());
        let encoded = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert_eq!(parse_key(&encoded).unwrap(), [1u8; 32]);
    }
}
