//! The client side of the SweepService: everything a person's tools do with a coordinator, none of
//! it touching the coordinator's insides (`.ci/run` checks that nothing here imports `jobs`,
//! `store` or `server`: the wire is the only way in).
//!
//! - [`SweepClient`]: one typed client, every list read to its last page.
//! - [`render`]: results and jobs as words, tables and the JSON document.
//! - [`report`]: a sweep's report (HTML and Markdown pages, SVG and PNG figures).
//!
//! Used by the `jetsweep` verbs (`cli/`), the test kit, the end-to-end tests and the chaos suite.

pub mod export;
pub mod onnx;
pub mod render;
pub mod report;

use std::collections::HashMap;
use std::path::Path;

use jetsweep_proto::auth::Channel;
use jetsweep_proto::client;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_client::SweepServiceClient;
use tonic::Status;

/// A connection to a coordinator's SweepService.
#[derive(Clone)]
pub struct SweepClient {
    rpc: SweepServiceClient<Channel>,
}

impl SweepClient {
    /// Connects to the coordinator at `url` (`http://` or `https://`, with `ca` for a private
    /// authority), sending `token` with every call when given. Errors say what could not be
    /// reached and why.
    pub async fn connect(
        url: &str,
        token: Option<&str>,
        ca: Option<&Path>,
    ) -> Result<SweepClient, jetsweep_proto::Error> {
        let channel = client::connect(url, token, ca).await?;
        Ok(SweepClient::new(client::sweep_client(channel)))
    }

    /// Wraps a generated client (one with the token and version interceptor).
    pub fn new(rpc: SweepServiceClient<Channel>) -> SweepClient {
        SweepClient { rpc }
    }

    /// The generated client, for a call this one does not wrap.
    pub fn rpc(&mut self) -> &mut SweepServiceClient<Channel> {
        &mut self.rpc
    }

    /// Submits a sweep file's text; the stored sweep.
    pub async fn submit(&mut self, toml: impl Into<Vec<u8>>) -> Result<pb::SweepView, Status> {
        Ok(self.submit_warned(toml).await?.0)
    }

    /// Submits a sweep file; also returns what the submitter should be warned of (e.g. a search
    /// that chooses on the training data).
    pub async fn submit_warned(
        &mut self,
        toml: impl Into<Vec<u8>>,
    ) -> Result<(pb::SweepView, Vec<String>), Status> {
        let reply = self
            .rpc
            .submit_sweep(pb::SubmitSweepRequest {
                sweep_toml: toml.into(),
            })
            .await?
            .into_inner();
        Ok((reply.sweep.ok_or_else(no("sweep"))?, reply.warnings))
    }

    /// One sweep's counts.
    pub async fn sweep(&mut self, sweep_id: &str) -> Result<pb::SweepView, Status> {
        let reply = self
            .rpc
            .get_sweep(pb::GetSweepRequest {
                sweep_id: sweep_id.into(),
            })
            .await?;
        reply.into_inner().sweep.ok_or_else(no("sweep"))
    }

    /// Every sweep, newest first (all pages).
    pub async fn sweeps(&mut self) -> Result<Vec<pb::SweepView>, Status> {
        all_items(async |page_token| {
            let page = self
                .rpc
                .list_sweeps(pb::ListSweepsRequest {
                    page_size: 0,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.sweeps, page.next_page_token))
        })
        .await
    }

    /// Every job of a sweep, in grid order (all pages).
    pub async fn jobs(&mut self, sweep_id: &str) -> Result<Vec<pb::JobView>, Status> {
        all_items(async |page_token| {
            let page = self
                .rpc
                .list_jobs(pb::ListJobsRequest {
                    sweep_id: sweep_id.to_string(),
                    page_size: 0,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.jobs, page.next_page_token))
        })
        .await
    }

    /// A sweep's results, every page as one response.
    pub async fn results(&mut self, sweep_id: &str) -> Result<pb::GetResultsResponse, Status> {
        let mut all = pb::GetResultsResponse::default();
        let call = async |page_token| {
            let page = self
                .rpc
                .get_results(pb::GetResultsRequest {
                    sweep_id: sweep_id.to_string(),
                    page_size: 0,
                    page_token,
                })
                .await?
                .into_inner();
            let next = page.next_page_token.clone();
            Ok((page, next))
        };
        every_page(call, |page: pb::GetResultsResponse| {
            all.rows.extend(page.rows);
            (all.best, all.total_rows, all.dataset, all.hints) =
                (page.best, page.total_rows, page.dataset, page.hints);
        })
        .await?;
        Ok(all)
    }

    /// A sweep's early-stopping decisions, every page as one response.
    pub async fn decisions(&mut self, sweep_id: &str) -> Result<pb::ListDecisionsResponse, Status> {
        let mut all = pb::ListDecisionsResponse::default();
        let call = async |page_token| {
            let page = self
                .rpc
                .list_decisions(pb::ListDecisionsRequest {
                    sweep_id: sweep_id.to_string(),
                    page_size: 0,
                    page_token,
                })
                .await?
                .into_inner();
            let next = page.next_page_token.clone();
            Ok((page, next))
        };
        every_page(call, |page: pb::ListDecisionsResponse| {
            all.decisions.extend(page.decisions);
            (all.rule, all.mode, all.metric, all.eta, all.total) =
                (page.rule, page.mode, page.metric, page.eta, page.total);
        })
        .await?;
        Ok(all)
    }

    /// Every job's reported epochs, by job id (all pages).
    pub async fn curves(
        &mut self,
        sweep_id: &str,
    ) -> Result<HashMap<String, Vec<pb::EpochMetrics>>, Status> {
        let curves = all_items(async |page_token| {
            let page = self
                .rpc
                .get_curves(pb::GetCurvesRequest {
                    sweep_id: sweep_id.to_string(),
                    page_size: 0,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.jobs, page.next_page_token))
        })
        .await?;
        Ok(curves.into_iter().map(|c| (c.job_id, c.epochs)).collect())
    }

    /// Cancels a sweep: what stops and what goes on for another sweep.
    pub async fn cancel(&mut self, sweep_id: &str) -> Result<pb::CancelSweepResponse, Status> {
        Ok(self
            .rpc
            .cancel_sweep(pb::CancelSweepRequest {
                sweep_id: sweep_id.into(),
            })
            .await?
            .into_inner())
    }

    /// Deletes a finished or cancelled sweep and what only it holds.
    pub async fn delete(&mut self, sweep_id: &str) -> Result<pb::DeleteSweepResponse, Status> {
        Ok(self
            .rpc
            .delete_sweep(pb::DeleteSweepRequest {
                sweep_id: sweep_id.into(),
            })
            .await?
            .into_inner())
    }

    /// A kept model of `sweep_id` (see `GetModelRequest`).
    pub async fn model(
        &mut self,
        request: pb::GetModelRequest,
    ) -> Result<pb::GetModelResponse, Status> {
        Ok(self.rpc.get_model(request).await?.into_inner())
    }

    /// Forgets what the worker named `worker` produced (admins only).
    pub async fn invalidate_worker(
        &mut self,
        worker: &str,
    ) -> Result<pb::InvalidateWorkerResponse, Status> {
        Ok(self
            .rpc
            .invalidate_worker(pb::InvalidateWorkerRequest {
                worker: worker.into(),
            })
            .await?
            .into_inner())
    }

    /// The workers the coordinator has seen.
    pub async fn workers(&mut self) -> Result<Vec<pb::WorkerView>, Status> {
        Ok(self
            .rpc
            .list_workers(pb::ListWorkersRequest {})
            .await?
            .into_inner()
            .workers)
    }

    /// The audit log, newest first: up to `limit` entries of one sweep (`""`: all).
    pub async fn audit(
        &mut self,
        sweep_id: &str,
        limit: u32,
    ) -> Result<Vec<pb::AuditEntry>, Status> {
        let mut entries = Vec::new();
        let mut page_token = String::new();
        while (entries.len() as u32) < limit {
            let page = self
                .rpc
                .list_audit(pb::ListAuditRequest {
                    sweep_id: sweep_id.to_string(),
                    page_size: limit - entries.len() as u32,
                    page_token,
                })
                .await?
                .into_inner();
            entries.extend(page.entries);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(entries)
    }

    /// The sweep's counts now and after every change, until it ends.
    pub async fn watch(
        &mut self,
        sweep_id: &str,
    ) -> Result<tonic::Streaming<pb::WatchSweepResponse>, Status> {
        Ok(self
            .rpc
            .watch_sweep(pb::WatchSweepRequest {
                sweep_id: sweep_id.into(),
            })
            .await?
            .into_inner())
    }
}

/// A reply without a field the contract says it carries.
fn no(field: &'static str) -> impl Fn() -> Status {
    move || Status::internal(format!("the coordinator answered without the {field}"))
}

/// Every item of a paged list: `call(token)` answers one page's items and the next token.
async fn all_items<T>(
    call: impl AsyncFnMut(String) -> Result<(Vec<T>, String), Status>,
) -> Result<Vec<T>, Status> {
    let mut all = Vec::new();
    every_page(call, |page| all.extend(page)).await?;
    Ok(all)
}

/// Calls a paged method until its last page: `call(token)` sends one request with `token` and
/// answers the page and its `next_page_token` (empty after the last); `take` keeps each page.
async fn every_page<P>(
    mut call: impl AsyncFnMut(String) -> Result<(P, String), Status>,
    mut take: impl FnMut(P),
) -> Result<(), Status> {
    let mut token = String::new();
    loop {
        let (page, next) = call(token).await?;
        take(page);
        if next.is_empty() {
            return Ok(());
        }
        token = next;
    }
}
