//! Who this worker is to the coordinator: the id registration gave it. A coordinator that no
//! longer knows the id (it was restarted on a fresh state file, or forgot the worker) answers
//! NOT_FOUND; the worker then registers again and carries on, and its next heartbeat names the
//! leases it holds, so the coordinator learns which of them are still current.

use jetsweep_proto::sync;
use jetsweep_proto::worker_id::worker_name;
use std::sync::RwLock;
use std::time::Duration;

use jetsweep_proto::auth::Channel;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;

use super::client::with_retry;
use crate::WorkerError;

/// The worker's current id, and how to get a new one.
pub struct Identity {
    client: WorkerServiceClient<Channel>,
    request: pb::RegisterRequest,
    id: RwLock<String>,
    /// Held while registering again, so two tasks that both meet NOT_FOUND register once.
    again: tokio::sync::Mutex<()>,
    /// How often the coordinator wants heartbeats.
    pub heartbeat_interval: Duration,
}

impl Identity {
    /// Registers (retrying while the coordinator is unreachable).
    pub async fn register(
        client: WorkerServiceClient<Channel>,
        request: pb::RegisterRequest,
    ) -> Result<Identity, WorkerError> {
        let reg = Self::call(&client, &request).await?;
        Ok(Identity {
            client,
            request,
            id: RwLock::new(reg.worker_id),
            again: tokio::sync::Mutex::new(()),
            heartbeat_interval: Duration::from_millis(u64::from(
                reg.heartbeat_interval_ms.max(100),
            )),
        })
    }

    async fn call(
        client: &WorkerServiceClient<Channel>,
        request: &pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, WorkerError> {
        let reg = with_retry("register", || {
            let mut c = client.clone();
            let r = request.clone();
            async move { c.register(r).await }
        })
        .await
        .map_err(WorkerError::rpc("register"))?
        .into_inner();
        tracing::info!(worker = %worker_name(&reg.worker_id), host = %request.host, slots = request.slots, device = %request.device, "registered");
        Ok(reg)
    }

    /// The id to send now.
    pub fn id(&self) -> String {
        sync::read(&self.id).clone()
    }

    /// The coordinator said it does not know `unknown`: registers again, unless another task
    /// already did since that id was sent.
    pub async fn register_again(&self, unknown: &str) -> Result<(), WorkerError> {
        let _one_at_a_time = self.again.lock().await;
        if self.id() != unknown {
            return Ok(());
        }
        tracing::warn!(worker = %worker_name(unknown), "the coordinator does not know this worker; registering again");
        let reg = Self::call(&self.client, &self.request).await?;
        *sync::write(&self.id) = reg.worker_id;
        Ok(())
    }
}
