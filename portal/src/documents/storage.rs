//! The object store that keeps the documents' encrypted files (`documents.storage`): a local
//! folder by default, an S3-compatible bucket by configuration. The vault encrypts before it
//! writes, so the store only ever holds ciphertext under random ids.

use std::path::Path;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use secrecy::ExposeSecret;

use crate::config::{StorageConfig, StorageKind};

/// The store, and the size of the parts a file is written in: what one upload holds in memory
/// (at most two parts in flight).
#[derive(Clone)]
pub struct Store {
    pub objects: Arc<dyn ObjectStore>,
    pub part_size: usize,
    /// The folder of a local store, whose files are synced to disk before their rows commit.
    pub local_root: Option<std::path::PathBuf>,
}

impl Store {
    /// Makes a file just written durable: on a local folder, the file and the folder's entry
    /// are synced (an S3 store has it durable once the upload completed).
    pub async fn sync(&self, name: &str) -> std::io::Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let file = root.join(name);
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&file)?.sync_all()?;
            match file.parent() {
                Some(dir) => std::fs::File::open(dir)?.sync_all(),
                None => Ok(()),
            }
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// A local folder takes small parts; S3 wants parts of at least 5 MiB but the last.
const LOCAL_PART: usize = 256 * 1024;
const S3_PART: usize = 5 * 1024 * 1024;

/// Opens the configured store, and checks that it takes a write (a bucket missing, wrong
/// credentials or an unreachable endpoint stop the start with a message, not the first upload).
pub async fn open(config: &StorageConfig, data_dir: &Path) -> Result<Store, String> {
    let mut local_root = None;
    let objects: Arc<dyn ObjectStore> = match config.kind {
        StorageKind::Local => {
            let dir = config
                .path
                .clone()
                .unwrap_or_else(|| data_dir.join("files"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            local_root =
                Some(std::fs::canonicalize(&dir).map_err(|e| format!("{}: {e}", dir.display()))?);
            Arc::new(
                LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?,
            )
        }
        StorageKind::S3 => {
            let mut builder = AmazonS3Builder::from_env().with_allow_http(config.allow_http);
            if let Some(bucket) = &config.bucket {
                builder = builder.with_bucket_name(bucket);
            }
            if let Some(endpoint) = &config.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &config.region {
                builder = builder.with_region(region);
            }
            if let Some(id) = &config.access_key_id {
                builder = builder.with_access_key_id(id);
            }
            if let Some(secret) = &config.secret_access_key {
                builder = builder.with_secret_access_key(secret.expose_secret());
            }
            Arc::new(builder.build().map_err(|e| format!("s3: {e}"))?)
        }
    };
    objects
        .put(&CHECK.into(), "sportello".into())
        .await
        .map_err(|e| format!("the document storage does not take a write: {e}"))?;
    Ok(Store {
        objects,
        local_root,
        part_size: match config.kind {
            StorageKind::Local => LOCAL_PART,
            StorageKind::S3 => S3_PART,
        },
    })
}

/// The small object written at start to check the store.
const CHECK: &str = "sportello-storage-check";
