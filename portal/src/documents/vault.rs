//! Files at rest: every document encrypted with AES-256-GCM under a fresh key of its own, that key
//! wrapped by the master key (bound to the document's id), stored under a random id. The file is
//! a sequence of segments `[u32 length][ciphertext]`, each of at most 64 KiB of plaintext, with
//! the nonce `segment number ‖ last-segment flag` — so a file is encrypted and decrypted as a
//! stream, never held whole in memory, and a segment changed, moved, dropped or cut off is
//! detected (the STREAM construction). The files go to the object store (`storage`): a local
//! folder or an S3-compatible bucket.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use object_store::buffered::{BufReader, BufWriter};

use super::storage::Store;
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub const SEGMENT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    /// The stored file or its wrapped key does not authenticate: altered or damaged.
    #[error("the stored file does not authenticate")]
    Tampered,
    #[error("master key: {0}")]
    MasterKey(String),
}

/// The master key and the store of the encrypted files.
#[derive(Clone)]
pub struct Vault {
    master: Key<Aes256Gcm>,
    store: Store,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.store.objects.to_string())
            .finish_non_exhaustive()
    }
}

fn nonce(segment: u64, last: bool) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&segment.to_be_bytes());
    n[11] = u8::from(last);
    n.into()
}

impl Vault {
    /// Reads the master key (64 hex characters) from `file`; with `generate`, creates it first
    /// (mode 0600) when it does not exist (development).
    pub fn open(file: &Path, store: Store, generate: bool) -> Result<Vault, VaultError> {
        if generate && !file.exists() {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(file, hex)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
        }
        let text = std::fs::read_to_string(file)
            .map_err(|e| VaultError::MasterKey(format!("{}: {e}", file.display())))?;
        let text = text.trim();
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .filter_map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        if bytes.len() != 32 || text.len() != 64 {
            return Err(VaultError::MasterKey(format!(
                "{}: 64 hexadecimal characters expected (openssl rand -hex 32)",
                file.display()
            )));
        }
        Ok(Vault {
            master: *Key::<Aes256Gcm>::from_slice(&bytes),
            store,
        })
    }

    /// Encrypts `plain` into a new stored file; returns its storage id and the wrapped key.
    pub async fn store(
        &self,
        document_id: &str,
        mut plain: impl AsyncRead + Unpin,
    ) -> Result<(String, Vec<u8>), VaultError> {
        let mut data_key = [0u8; 32];
        rand::rng().fill_bytes(&mut data_key);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key));
        let storage_id = crate::web::session::random_token(32);
        // One part buffered, then a multipart upload: never the whole file in memory.
        let mut out = BufWriter::with_capacity(
            self.store.objects.clone(),
            storage_id.as_str().into(),
            self.store.part_size,
        )
        .with_max_concurrency(2);
        // One segment read ahead, to know which is the last.
        let mut current = read_segment(&mut plain).await?;
        let mut segment = 0u64;
        loop {
            let next = if current.len() == SEGMENT {
                read_segment(&mut plain).await?
            } else {
                Vec::new()
            };
            let last = next.is_empty();
            let sealed = cipher
                .encrypt(&nonce(segment, last), current.as_slice())
                .map_err(|_| VaultError::Tampered)?;
            out.write_all(&(sealed.len() as u32).to_be_bytes()).await?;
            out.write_all(&sealed).await?;
            if last {
                break;
            }
            current = next;
            segment += 1;
        }
        out.shutdown().await?;
        self.store.sync(&storage_id).await?;
        let wrapped = self.wrap(document_id, &data_key)?;
        Ok((storage_id, wrapped))
    }

    /// Deletes a stored file (already gone is fine).
    pub async fn delete(&self, storage_id: &str) -> Result<(), VaultError> {
        match self.store.objects.delete(&storage_id.into()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn wrap(&self, document_id: &str, data_key: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
        let mut n = [0u8; 12];
        rand::rng().fill_bytes(&mut n);
        let sealed = Aes256Gcm::new(&self.master)
            .encrypt(
                &n.into(),
                Payload {
                    msg: data_key,
                    aad: document_id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Tampered)?;
        Ok([n.as_slice(), &sealed].concat())
    }

    fn unwrap_key(&self, document_id: &str, wrapped: &[u8]) -> Result<Aes256Gcm, VaultError> {
        if wrapped.len() < 12 {
            return Err(VaultError::Tampered);
        }
        let (n, sealed) = wrapped.split_at(12);
        let key = Aes256Gcm::new(&self.master)
            .decrypt(
                Nonce::from_slice(n),
                Payload {
                    msg: sealed,
                    aad: document_id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Tampered)?;
        if key.len() != 32 {
            return Err(VaultError::Tampered);
        }
        Ok(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)))
    }

    /// Opens a stored file for reading, segment by segment.
    pub async fn open_file(
        &self,
        document_id: &str,
        storage_id: &str,
        wrapped: &[u8],
    ) -> Result<Reader, VaultError> {
        let cipher = self.unwrap_key(document_id, wrapped)?;
        let meta = self.store.objects.head(&storage_id.into()).await?;
        let file = BufReader::new(self.store.objects.clone(), &meta);
        Ok(Reader {
            cipher,
            file,
            segment: 0,
            done: false,
        })
    }

    /// Decrypts a whole stored file, checking every segment (for tests and small files).
    pub async fn read_all(
        &self,
        document_id: &str,
        storage_id: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let mut reader = self.open_file(document_id, storage_id, wrapped).await?;
        let mut all = Vec::new();
        while let Some(part) = reader.next_segment().await? {
            all.extend_from_slice(&part);
        }
        Ok(all)
    }
}

async fn read_segment(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; SEGMENT];
    let mut filled = 0;
    while filled < SEGMENT {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// A stored file being decrypted.
pub struct Reader {
    cipher: Aes256Gcm,
    file: BufReader,
    segment: u64,
    done: bool,
}

impl Reader {
    /// The next segment of plaintext; `None` after the last. A file cut short, reordered or
    /// altered is an error.
    pub async fn next_segment(&mut self) -> Result<Option<Vec<u8>>, VaultError> {
        if self.done {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.file
            .read_exact(&mut len)
            .await
            .map_err(|_| VaultError::Tampered)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > SEGMENT + 16 {
            return Err(VaultError::Tampered);
        }
        let mut sealed = vec![0u8; len];
        self.file
            .read_exact(&mut sealed)
            .await
            .map_err(|_| VaultError::Tampered)?;
        // The last segment says so in its nonce; anything after it is tampering too.
        let plain = match self
            .cipher
            .decrypt(&nonce(self.segment, false), sealed.as_slice())
        {
            Ok(p) => p,
            Err(_) => {
                let p = self
                    .cipher
                    .decrypt(&nonce(self.segment, true), sealed.as_slice())
                    .map_err(|_| VaultError::Tampered)?;
                let mut rest = [0u8; 1];
                if self.file.read(&mut rest).await? != 0 {
                    return Err(VaultError::Tampered);
                }
                self.done = true;
                p
            }
        };
        self.segment += 1;
        Ok(Some(plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn vault(dir: &Path) -> Vault {
        let files = dir.join("files");
        std::fs::create_dir_all(&files).unwrap_or_default();
        let store = object_store::local::LocalFileSystem::new_with_prefix(&files)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let store = Store {
            objects: Arc::new(store),
            part_size: 100_000,
            local_root: Some(files.canonicalize().unwrap_or_else(|e| unreachable!("{e}"))),
        };
        Vault::open(&dir.join("keys/documents.key"), store, true)
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[tokio::test]
    async fn round_trip_and_every_kind_of_tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let v = vault(dir.path());
        let path = |id: &str| dir.path().join("files").join(id);
        for size in [
            0usize,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT + 17,
        ] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let (id, wrapped) = v
                .store("doc", plain.as_slice())
                .await
                .unwrap_or_else(|e| unreachable!("{e}"));
            let stored = std::fs::read(path(&id)).unwrap_or_default();
            assert_ne!(stored, plain);
            assert_eq!(
                v.read_all("doc", &id, &wrapped).await.ok(),
                Some(plain.clone()),
                "{size}"
            );
            // The wrapped key belongs to this document only.
            assert!(matches!(
                v.read_all("other", &id, &wrapped).await,
                Err(VaultError::Tampered)
            ));
            // One bit flipped.
            let mut bad = stored.clone();
            let at = bad.len() - 1;
            bad[at] ^= 1;
            std::fs::write(path(&id), &bad).unwrap_or_default();
            assert!(
                matches!(
                    v.read_all("doc", &id, &wrapped).await,
                    Err(VaultError::Tampered)
                ),
                "{size}"
            );
            // Cut after the first segment, or extended.
            if size > SEGMENT {
                std::fs::write(path(&id), &stored[..4 + SEGMENT + 16]).unwrap_or_default();
                assert!(matches!(
                    v.read_all("doc", &id, &wrapped).await,
                    Err(VaultError::Tampered)
                ));
            }
            let mut longer = stored.clone();
            longer.extend_from_slice(&stored[..stored.len().min(20)]);
            std::fs::write(path(&id), &longer).unwrap_or_default();
            assert!(v.read_all("doc", &id, &wrapped).await.is_err());
        }
    }

    #[test]
    fn a_bad_master_key_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let file = dir.path().join("k");
        std::fs::write(&file, "abc").unwrap_or_default();
        let store = Store {
            objects: Arc::new(object_store::memory::InMemory::new()),
            part_size: 100_000,
            local_root: None,
        };
        assert!(matches!(
            Vault::open(&file, store, false),
            Err(VaultError::MasterKey(_))
        ));
    }
}
