//! The worker's datasets: each one named by its content sha256, loaded once and shared by every trial
//! that uses it (one copy in memory however many slots run), read from the local cache folder or
//! fetched from the coordinator and verified before use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jetsweep_data::{Prepared, cache};
use jetsweep_proto::auth::Channel;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tokio::sync::Mutex;

use crate::WorkerError;

/// Loaded datasets by sha256, and where they are kept on disk.
pub struct Datasets {
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<Prepared>>>,
}

impl Datasets {
    pub fn new(cache_dir: &Path) -> Self {
        Datasets {
            dir: cache_dir.join("datasets"),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The dataset with content hash `sha256`: from memory, else from disk, else fetched from the
    /// coordinator. A file whose checksum or content hash does not match is refused and not kept.
    pub async fn get(
        &self,
        sha256: &str,
        client: &mut WorkerServiceClient<Channel>,
    ) -> Result<Arc<Prepared>, WorkerError> {
        let mut loaded = self.loaded.lock().await;
        if let Some(d) = loaded.get(sha256) {
            return Ok(d.clone());
        }
        let path = self.dir.join(format!("{sha256}.{}", cache::EXTENSION));
        // The file's own checksum only says it is whole; what it holds must hash to the name it
        // was asked by (a file in the cache folder could have been replaced, checksum and all).
        let prepared = match tokio::task::spawn_blocking({
            let path = path.clone();
            let sha = sha256.to_string();
            move || cache::load(&path).map(|p| (p.content_sha256() == sha).then_some(p))
        })
        .await?
        {
            Ok(Some(p)) => p,
            Ok(None) => {
                tracing::warn!(dataset = %sha256, path = %path.display(), "cached dataset's content does not hash to its name; fetching it again");
                self.fetch(sha256, &path, client).await?
            }
            Err(_) => self.fetch(sha256, &path, client).await?,
        };
        tracing::info!(dataset = %sha256, rows = prepared.train.len() + prepared.test.len(), "dataset ready");
        let prepared = Arc::new(prepared);
        loaded.insert(sha256.to_string(), prepared.clone());
        Ok(prepared)
    }

    async fn fetch(
        &self,
        sha256: &str,
        path: &Path,
        client: &mut WorkerServiceClient<Channel>,
    ) -> Result<Prepared, WorkerError> {
        tracing::info!(dataset = %sha256, "fetching the dataset from the coordinator");
        // Opening the download is retried while the coordinator is unreachable or busy (it
        // serves a bounded number of downloads at once and says UNAVAILABLE past them).
        let mut stream = super::client::with_retry("fetch dataset", || {
            let mut client = client.clone();
            let request = pb::FetchDatasetRequest {
                sha256: sha256.to_string(),
            };
            async move { client.fetch_dataset(request).await }
        })
        .await
        .map_err(WorkerError::rpc("fetch dataset"))?
        .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(WorkerError::rpc("fetch dataset"))?
        {
            if chunk.offset as usize != bytes.len() {
                return Err(WorkerError::DatasetMismatch {
                    sha256: sha256.to_string(),
                    reason: format!(
                        "chunk at offset {} after {} bytes",
                        chunk.offset,
                        bytes.len()
                    ),
                });
            }
            bytes.extend_from_slice(&chunk.data);
        }
        let path = path.to_path_buf();
        let sha = sha256.to_string();
        tokio::task::spawn_blocking(move || -> Result<Prepared, WorkerError> {
            let prepared = cache::decode(&bytes, &path)?;
            let content = prepared.content_sha256();
            if content != sha {
                return Err(WorkerError::DatasetMismatch {
                    reason: format!("its content hashes to {content}"),
                    sha256: sha,
                });
            }
            cache::save(&prepared, &path)?;
            Ok(prepared)
        })
        .await?
    }
}
