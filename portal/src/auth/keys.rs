//! The portal's own keys: one RSA key to sign (request objects, client assertions, the entity
//! configuration) and one to receive encrypted userinfo. In development they are generated on
//! first start and kept in `<data_dir>/keys` with owner-only permissions; in production they must
//! be configured.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{JwsHeader, RS256};
use josekit::jwt::{self, JwtPayload};
use sha2::{Digest, Sha256};

use crate::config::{Config, Mode};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("keys: {0}")]
    Missing(String),
    #[error("keys: {0}")]
    Invalid(String),
    #[error("keys: {0}")]
    Jose(#[from] josekit::JoseError),
}

/// An RSA key pair with its key id (the RFC 7638 thumbprint).
#[derive(Clone)]
pub struct NamedKey {
    pair: RsaKeyPair,
    pub kid: String,
}

impl std::fmt::Debug for NamedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NamedKey {{ kid: {}, private: [redacted] }}", self.kid)
    }
}

impl NamedKey {
    fn new(mut pair: RsaKeyPair) -> NamedKey {
        let public = pair.to_jwk_public_key();
        let member = |name: &str| {
            public
                .parameter(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let canonical = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            member("e"),
            member("n")
        );
        let kid =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(canonical));
        pair.set_key_id(Some(kid.clone()));
        NamedKey { pair, kid }
    }

    pub fn generate() -> Result<NamedKey, KeyError> {
        Ok(NamedKey::new(RsaKeyPair::generate(2048)?))
    }

    /// Reads a PKCS#8 (or PKCS#1) PEM RSA key of at least 2048 bits. The key is not tied to an
    /// algorithm: the same key type serves signatures and decryption.
    pub fn from_pem(pem: &[u8]) -> Result<NamedKey, KeyError> {
        let pair = RsaKeyPair::from_pem(pem)?;
        if pair.key_len() < 256 {
            return Err(KeyError::Invalid(
                "RSA keys must have at least 2048 bits".into(),
            ));
        }
        Ok(NamedKey::new(pair))
    }

    pub fn to_pem(&self) -> Vec<u8> {
        self.pair.to_pem_private_key()
    }

    /// The public half as a JWK with `kid`, `use` and `alg` set.
    pub fn public_jwk(&self, key_use: &str, alg: &str) -> Jwk {
        let mut jwk = self.pair.to_jwk_public_key();
        jwk.set_key_id(self.kid.clone());
        jwk.set_key_use(key_use);
        jwk.set_algorithm(alg);
        jwk
    }

    /// The private key as a JWK (for decryption); never serialised anywhere.
    pub(crate) fn private_jwk(&self) -> Jwk {
        let mut jwk = self.pair.to_jwk_private_key();
        jwk.set_key_id(self.kid.clone());
        jwk
    }

    /// Signs `payload` as an RS256 JWT with this key's `kid` and the given `typ`.
    pub fn sign(&self, payload: &JwtPayload, typ: &str) -> Result<String, KeyError> {
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(self.kid.clone());
        let signer = RS256.signer_from_jwk(&self.pair.to_jwk_private_key())?;
        Ok(jwt::encode_with_signer(payload, &header, &signer)?)
    }
}

/// Sets `iat` to now and `exp` to now + `lifetime`, in whole seconds (josekit would write fractions).
pub fn set_lifetime(
    payload: &mut JwtPayload,
    lifetime: std::time::Duration,
) -> Result<(), KeyError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    payload.set_claim("iat", Some(now.into()))?;
    payload.set_claim("exp", Some((now + lifetime.as_secs()).into()))?;
    Ok(())
}

/// The portal's keys: two for OpenID Connect, one for the federation.
#[derive(Debug, Clone)]
pub struct PortalKeys {
    pub signing: NamedKey,
    pub encryption: NamedKey,
    pub federation: NamedKey,
}

impl PortalKeys {
    pub fn load(config: &Config) -> Result<PortalKeys, KeyError> {
        let k = &config.keys;
        match (&k.signing_key_file, &k.encryption_key_file, &k.federation_key_file) {
            (Some(signing), Some(encryption), Some(federation)) => Ok(PortalKeys {
                signing: read_key(signing)?,
                encryption: read_key(encryption)?,
                federation: read_key(federation)?,
            }),
            _ if config.mode == Mode::Production => Err(KeyError::Missing(
                "production mode needs keys.signing_key_file, keys.encryption_key_file and keys.federation_key_file".into(),
            )),
            _ => {
                let dir = key_dir(&config.data_dir)?;
                Ok(PortalKeys {
                    signing: read_or_generate(&dir.join("signing.pem"))?,
                    encryption: read_or_generate(&dir.join("encryption.pem"))?,
                    federation: read_or_generate(&dir.join("federation.pem"))?,
                })
            }
        }
    }
}

/// `<data_dir>/keys`, created owner-only.
pub fn key_dir(data_dir: &Path) -> Result<PathBuf, KeyError> {
    let dir = data_dir.join("keys");
    let err = |e: std::io::Error| KeyError::File {
        path: dir.clone(),
        reason: e.to_string(),
    };
    fs::create_dir_all(&dir).map_err(err)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(dir)
}

/// Reads a PEM key, refusing one that others than its owner can read.
pub fn read_key(path: &Path) -> Result<NamedKey, KeyError> {
    let err = |reason: String| KeyError::File {
        path: path.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(err("readable by group or others; chmod 600 it".into()));
    }
    let pem = fs::read(path).map_err(|e| err(e.to_string()))?;
    NamedKey::from_pem(&pem).map_err(|e| err(e.to_string()))
}

/// Reads the key at `path`, or generates one and writes it there with mode 0600.
pub fn read_or_generate(path: &Path) -> Result<NamedKey, KeyError> {
    if path.exists() {
        return read_key(path);
    }
    let key = NamedKey::generate()?;
    let err = |e: std::io::Error| KeyError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.write_all(&key.to_pem()).map_err(err)?;
    tracing::info!(path = %path.display(), "generated a development key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_owner_only_and_reload_identically() -> Result<(), KeyError> {
        let dir = tempfile::tempdir().map_err(|e| KeyError::Missing(e.to_string()))?;
        let path = key_dir(dir.path())?.join("k.pem");
        let first = read_or_generate(&path)?;
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let again = read_or_generate(&path)?;
        assert_eq!(first.kid, again.kid);
        // A key read back works for decryption as well as signatures (no algorithm pinned on it).
        let encrypter = josekit::jwe::RSA_OAEP_256
            .encrypter_from_jwk(&first.public_jwk("enc", "RSA-OAEP-256"))?;
        let mut header = josekit::jwe::JweHeader::new();
        header.set_content_encryption("A256CBC-HS512");
        let jwe = josekit::jwe::serialize_compact(b"ciao", &header, &encrypter)?;
        let decrypter = josekit::jwe::RSA_OAEP_256.decrypter_from_jwk(&again.private_jwk())?;
        assert_eq!(
            josekit::jwe::deserialize_compact(&jwe, &decrypter)?.0,
            b"ciao"
        );
        assert!(!format!("{first:?}").contains("PRIVATE"));
        Ok(())
    }

    #[test]
    fn production_without_keys_is_refused() {
        let config = Config {
            mode: Mode::Production,
            ..Config::default()
        };
        assert!(PortalKeys::load(&config).is_err());
    }
}
