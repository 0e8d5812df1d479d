//! `SweepService`: submit, inspect, watch, aggregate and cancel sweeps.

use std::pin::Pin;
use std::time::Duration;

use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_server::SweepService;
use jetsweep_proto::worker_id::worker_name;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::server::connections::Over;
use jetsweep_proto::limits::MAX_SWEEPS_PAGE;

use super::{required, views};
use crate::jobs;
use crate::server::Coordinator;
use crate::server::gate::caller_of;
use crate::sweep::SweepSpec;

/// Jobs per `ListJobs` page when the request does not say.
const DEFAULT_PAGE: u32 = 1000;
/// Sweeps per `ListSweeps` page when the request does not say: a screen's worth and more.
const DEFAULT_SWEEPS_PAGE: u32 = 100;
/// Result rows per `GetResults` page when the request does not say, and at most: a row is about
/// 100 bytes, so a page stays far inside the message limit.
const DEFAULT_RESULTS_PAGE: u32 = 2000;
const MAX_RESULTS_PAGE: u32 = 5000;

/// Jobs per `GetCurves` page when the request does not say, and at most; and the epochs at which
/// a page ends early (an epoch is about 100 bytes: a page stays far inside the message limit).
const DEFAULT_CURVES_PAGE: u32 = 500;
const MAX_CURVES_PAGE: u32 = 2000;
/// Audit entries per `ListAudit` page when the request does not say.
const DEFAULT_AUDIT_PAGE: u32 = 100;
const CURVES_PAGE_EPOCHS: u32 = 20_000;

/// The offset a page token stands for.
fn page_offset(token: &str) -> Result<usize, crate::Error> {
    Ok(results_token(token)?.0)
}

/// A results page token, `OFFSET.ENDED`: where the next page starts, and the ended-job count of
/// the aggregate the earlier pages came from (so later pages come from the same one, without
/// counting again). A bare `OFFSET` (a jobs page token) is read too.
fn results_token(token: &str) -> Result<(usize, Option<u32>), crate::Error> {
    if token.is_empty() {
        return Ok((0, None));
    }
    let bad = || {
        crate::Error::InvalidRequest(format!(
            "page_token {:?} is not one this server gave",
            token.chars().take(40).collect::<String>()
        ))
    };
    match token.split_once('.') {
        Some((offset, done)) => Ok((
            offset.parse().map_err(|_| bad())?,
            Some(done.parse().map_err(|_| bad())?),
        )),
        None => Ok((token.parse().map_err(|_| bad())?, None)),
    }
}
/// A watched sweep's counts are re-read at most this often: live enough for progress bars, and one cheap
/// query per watcher however many reports arrive.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

pub struct Sweeps(pub Coordinator);

#[tonic::async_trait]
impl SweepService for Sweeps {
    async fn submit_sweep(
        &self,
        request: Request<pb::SubmitSweepRequest>,
    ) -> Result<Response<pb::SubmitSweepResponse>, Status> {
        let caller = caller_of(request.extensions().get());
        let _turn = self
            .0
            .submissions
            .acquire()
            .await
            .map_err(|_| crate::Error::Unavailable("the coordinator is stopping".into()))?;
        let text = String::from_utf8(request.into_inner().sweep_toml).map_err(|e| {
            crate::Error::InvalidRequest(format!(
                "the sweep file is not UTF-8 text: invalid byte at offset {}",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let spec = SweepSpec::parse_with(&text, &self.0.access).inspect_err(|e| {
            tracing::info!(error = %e, "sweep file refused");
        })?;
        let data_dir = self.0.data_dir.clone();
        let (dataset_spec, val_fraction) = (spec.dataset.clone(), spec.val_fraction);
        let dataset = tokio::task::spawn_blocking(move || {
            crate::datasets::prepare(&data_dir, &dataset_spec, val_fraction)
        })
        .await
        .map_err(|e| crate::Error::Unavailable(format!("dataset task failed: {e}")))?
        .inspect_err(|e| tracing::info!(error = %e, "sweep's dataset refused"))?;
        let warnings = spec.warnings(dataset.validation);
        let counts = self
            .0
            .write(move |tx, now| {
                let mut counts = jobs::submit(tx, &spec, &text, &dataset, now)?;
                let detail = format!("{} jobs, {} reused", counts.total, counts.reused);
                jobs::audit::submitted(tx, now, &caller, &counts.id, &detail)?;
                counts.submitted_by = caller.name.clone();
                Ok(counts)
            })
            .await?;
        tracing::info!(
            sweep = %counts.id,
            by = %counts.submitted_by,
            jobs = counts.total,
            reused = counts.reused,
            queued = counts.queued,
            "sweep submitted"
        );
        for warning in &warnings {
            tracing::warn!(sweep = %counts.id, "{warning}");
        }
        Ok(Response::new(pb::SubmitSweepResponse {
            sweep: Some(views::sweep(&counts)),
            warnings,
        }))
    }

    async fn get_sweep(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::GetSweepResponse>, Status> {
        let id = request.into_inner().sweep_id;
        required(&id, "sweep_id")?;
        let counts = self.0.read(move |tx| jobs::sweep_counts(tx, &id)).await?;
        Ok(Response::new(pb::GetSweepResponse {
            sweep: Some(views::sweep(&counts)),
        }))
    }

    async fn list_sweeps(
        &self,
        request: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        let r = request.into_inner();
        // The token is the index (newest first) the page starts at.
        let from = u32::try_from(page_offset(&r.page_token)?).unwrap_or(u32::MAX);
        let limit = match r.page_size {
            0 => DEFAULT_SWEEPS_PAGE,
            n => n.min(MAX_SWEEPS_PAGE),
        };
        let (sweeps, total) = self
            .0
            .read(move |tx| jobs::sweeps_page(tx, from, limit))
            .await?;
        let end = from.saturating_add(sweeps.len() as u32);
        Ok(Response::new(pb::ListSweepsResponse {
            sweeps: sweeps.iter().map(views::sweep).collect(),
            next_page_token: if end < total {
                end.to_string()
            } else {
                String::new()
            },
            total,
        }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let r = request.into_inner();
        required(&r.sweep_id, "sweep_id")?;
        // The token is the grid position the page starts at.
        let from = u32::try_from(page_offset(&r.page_token)?).unwrap_or(u32::MAX);
        let limit = if r.page_size == 0 {
            DEFAULT_PAGE
        } else {
            r.page_size.min(DEFAULT_PAGE)
        };
        let id = r.sweep_id.clone();
        let (head, (page, next)) = self
            .0
            .read(move |tx| {
                Ok((
                    jobs::sweep_head(tx, &id)?,
                    jobs::jobs_page(tx, &id, from, limit)?,
                ))
            })
            .await?;
        let dataset = head.dataset.as_ref().map(pb::DatasetRef::from);
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page
                .iter()
                .map(|j| views::job(j, &r.sweep_id, dataset.clone()))
                .collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    type WatchSweepStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchSweepResponse, Status>> + Send>>;

    async fn watch_sweep(
        &self,
        request: Request<pb::WatchSweepRequest>,
    ) -> Result<Response<Self::WatchSweepStream>, Status> {
        let client = request.remote_addr().map(|a| a.ip());
        let id = request.into_inner().sweep_id;
        required(&id, "sweep_id")?;
        let permit = self.0.watch_stream_slot(client).map_err(|over| {
            crate::Error::Unavailable(match over {
                Over::Total => format!(
                    "{} watch streams are open already; try again when some have ended",
                    crate::server::MAX_WATCH_STREAMS
                ),
                Over::PerAddress => format!(
                    "{} watch streams are open from your address already; end some first",
                    crate::server::MAX_WATCH_STREAMS_PER_ADDRESS
                ),
            })
        })?;
        // Subscribe before the first read, so no commit between the two is missed.
        let mut commits = self.0.writer.commits();
        let read_id = id.clone();
        let first = self
            .0
            .read(move |tx| jobs::sweep_counts(tx, &read_id))
            .await?;
        let (out, rx) = mpsc::channel(16);
        let coordinator = self.0.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut counts = first;
            let mut sent = None;
            loop {
                let finished = counts.finished();
                if sent.as_ref() != Some(&counts) {
                    let view = pb::WatchSweepResponse {
                        sweep: Some(views::sweep(&counts)),
                    };
                    if out.send(Ok(view)).await.is_err() {
                        return;
                    }
                    sent = Some(counts);
                }
                if finished {
                    return;
                }
                // Wait for a commit, then let more pile up: one read per interval however busy.
                // A watcher that went away is noticed at once, not at the next change it would
                // have been sent.
                tokio::select! {
                    changed = commits.changed() => if changed.is_err() { return },
                    _ = out.closed() => return,
                }
                tokio::time::sleep(WATCH_INTERVAL).await;
                commits.borrow_and_update();
                let read_id = id.clone();
                match coordinator
                    .read(move |tx| jobs::sweep_counts(tx, &read_id))
                    .await
                {
                    Ok(c) => counts = c,
                    Err(e) => {
                        let _ = out.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_results(
        &self,
        request: Request<pb::GetResultsRequest>,
    ) -> Result<Response<pb::GetResultsResponse>, Status> {
        let r = request.into_inner();
        required(&r.sweep_id, "sweep_id")?;
        let (offset, snapshot) = results_token(&r.page_token)?;
        let limit = match r.page_size {
            0 => DEFAULT_RESULTS_PAGE,
            n => n.min(MAX_RESULTS_PAGE),
        } as usize;
        let id = r.sweep_id;
        // Pages after the first come from the aggregate the first came from, while it is kept.
        let kept = snapshot.and_then(|done| Some((done, self.0.results.get(&id, done)?)));
        let (done, aggregated) = match kept {
            Some(kept) => kept,
            None => self.0.aggregate_results(&id).await?,
        };
        Ok(Response::new(views::results_page(
            &aggregated,
            offset,
            limit,
            done,
        )))
    }

    async fn get_curves(
        &self,
        request: Request<pb::GetCurvesRequest>,
    ) -> Result<Response<pb::GetCurvesResponse>, Status> {
        let r = request.into_inner();
        required(&r.sweep_id, "sweep_id")?;
        let from = page_offset(&r.page_token)?;
        let from = u32::try_from(from).map_err(|_| {
            crate::Error::InvalidRequest("page_token is not one this server gave".into())
        })?;
        let limit = match r.page_size {
            0 => DEFAULT_CURVES_PAGE,
            n => n.min(MAX_CURVES_PAGE),
        };
        let (curves, next) = self
            .0
            .read(move |tx| jobs::curves_page(tx, &r.sweep_id, from, limit, CURVES_PAGE_EPOCHS))
            .await?;
        Ok(Response::new(pb::GetCurvesResponse {
            jobs: curves
                .iter()
                .map(|c| pb::JobCurve {
                    job_id: c.job_id.clone(),
                    epochs: c.epochs.iter().map(Into::into).collect(),
                })
                .collect(),
            next_page_token: next.map_or(String::new(), |n| n.to_string()),
        }))
    }

    async fn list_decisions(
        &self,
        request: Request<pb::ListDecisionsRequest>,
    ) -> Result<Response<pb::ListDecisionsResponse>, Status> {
        let r = request.into_inner();
        required(&r.sweep_id, "sweep_id")?;
        let from = u32::try_from(page_offset(&r.page_token)?).map_err(|_| {
            crate::Error::InvalidRequest("page_token is not one this server gave".into())
        })?;
        let limit = match r.page_size {
            0 => DEFAULT_PAGE,
            n => n.min(DEFAULT_PAGE),
        };
        let id = r.sweep_id.clone();
        let (head, (settings, rows, total)) = self
            .0
            .read(move |tx| {
                Ok((
                    jobs::sweep_head(tx, &id)?,
                    jobs::decisions_page(tx, &id, from, limit)?,
                ))
            })
            .await?;
        let dataset = head.dataset.as_ref().map(pb::DatasetRef::from);
        let end = from.saturating_add(rows.len() as u32);
        let settings = settings.unwrap_or_default();
        Ok(Response::new(pb::ListDecisionsResponse {
            rule: settings.rule,
            mode: settings.mode,
            metric: settings.metric,
            eta: settings.eta,
            decisions: rows
                .iter()
                .map(|d| views::decision(d, dataset.clone()))
                .collect(),
            next_page_token: if end < total {
                end.to_string()
            } else {
                String::new()
            },
            total,
        }))
    }

    async fn cancel_sweep(
        &self,
        request: Request<pb::CancelSweepRequest>,
    ) -> Result<Response<pb::CancelSweepResponse>, Status> {
        let caller = caller_of(request.extensions().get());
        let id = request.into_inner().sweep_id;
        required(&id, "sweep_id")?;
        let (counts, (stopping, kept)) = self.0.cancel(caller, id).await?;
        Ok(Response::new(pb::CancelSweepResponse {
            sweep: Some(views::sweep(&counts)),
            stopping,
            kept,
        }))
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        use crate::jobs::models::{self, Kind, Which};
        let r = request.into_inner();
        required(&r.sweep_id, "sweep_id")?;
        let which = match (r.job_id.as_str(), r.point, r.seed) {
            ("", None, None) => Which::Best,
            ("", Some(point), Some(seed)) => Which::Point { point, seed },
            (job, None, None) => {
                required(job, "job_id")?;
                Which::Job(job.to_string())
            }
            _ => {
                return Err(crate::Error::InvalidRequest(
                    "give a job_id, or a point with its seed, or neither (the best point's best seed)"
                        .into(),
                )
                .into());
            }
        };
        let kind = if r.last { Kind::Last } else { Kind::Best };
        let sweep_id = r.sweep_id.clone();
        let (found, kept, metrics, spec_toml, dataset) = self
            .0
            .read(move |tx| {
                let found = models::find_trial(tx, &sweep_id, &which)?;
                let kept = models::kept_weights(tx, &found.job_id, kind)?.ok_or_else(|| {
                    crate::Error::NotFound(format!(
                        "{} weights of job {}: its sweeps kept none (keep_models = {})",
                        kind.name(),
                        found.job_id,
                        if kind == Kind::Last {
                            "\"best\" or \"none\"; \"best-and-last\" keeps the last"
                        } else {
                            "\"none\""
                        }
                    ))
                })?;
                let metrics = models::epoch_metrics(tx, &found.job_id, kept.0)?;
                let (spec_toml, sha256): (String, String) = tx.query_row(
                    "SELECT spec_toml, dataset_sha256 FROM sweeps WHERE id = ?1",
                    [&sweep_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let dataset = crate::jobs::dataset_by_sha(tx, &sha256)?;
                Ok((found, kept, metrics, spec_toml, dataset))
            })
            .await?;
        let (mean, std) = self.0.scaler_of(&spec_toml, &dataset.sha256).await?;
        let trial = jetsweep_proto::convert::trial_to_wire(
            &found.trial,
            Some(pb::DatasetRef::from(&dataset)),
        );
        Ok(Response::new(pb::GetModelResponse {
            job_id: found.job_id,
            weights: kept.1,
            trial: Some(trial),
            epoch: kept.0,
            metrics: metrics.as_ref().map(pb::EpochMetrics::from),
            point: found.point,
            scaler_mean: mean,
            scaler_std: std,
        }))
    }

    async fn delete_sweep(
        &self,
        request: Request<pb::DeleteSweepRequest>,
    ) -> Result<Response<pb::DeleteSweepResponse>, Status> {
        let caller = caller_of(request.extensions().get());
        let id = request.into_inner().sweep_id;
        required(&id, "sweep_id")?;
        let (deleted, dataset_bytes) = self.0.delete(caller, id).await?;
        Ok(Response::new(pb::DeleteSweepResponse {
            jobs: deleted.jobs,
            shared: deleted.shared,
            epochs: deleted.epochs,
            models: deleted.models,
            freed_bytes: deleted.freed_bytes,
            dataset_bytes,
        }))
    }

    async fn invalidate_worker(
        &self,
        request: Request<pb::InvalidateWorkerRequest>,
    ) -> Result<Response<pb::InvalidateWorkerResponse>, Status> {
        let caller = caller_of(request.extensions().get());
        let worker = request.into_inner().worker;
        required(&worker, "worker")?;
        let done = self.0.invalidate_worker(caller, worker).await?;
        Ok(Response::new(pb::InvalidateWorkerResponse {
            attempts: done.attempts,
            epochs: done.epochs,
            requeued: done.requeued,
            sweep_ids: done.sweeps,
        }))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let r = request.into_inner();
        let before = match r.page_token.as_str() {
            "" => None,
            token => Some(
                token
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        crate::Error::InvalidRequest(format!(
                            "page_token {:?} is not one this server gave",
                            token.chars().take(40).collect::<String>()
                        ))
                    })?,
            ),
        };
        let limit = match r.page_size {
            0 => DEFAULT_AUDIT_PAGE,
            n => n.min(jobs::audit::MAX_PAGE),
        };
        let sweep = (!r.sweep_id.is_empty()).then_some(r.sweep_id);
        let rows = self
            .0
            .read(move |tx| jobs::audit::page(tx, sweep.as_deref(), before, limit))
            .await?;
        let next_page_token = match rows.last() {
            Some(last) if rows.len() as u32 == limit => last.seq.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditResponse {
            entries: rows
                .into_iter()
                .map(|a| pb::AuditEntry {
                    at_unix_ms: a.at_ms,
                    who: a.who,
                    role: a.role,
                    action: a.action,
                    sweep_id: a.sweep_id,
                    detail: a.detail,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn list_workers(
        &self,
        _: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let workers = self.0.read(jobs::list_workers).await?;
        let now = self.0.clock.now();
        Ok(Response::new(pb::ListWorkersResponse {
            workers: workers
                .into_iter()
                .map(|(w, job_ids)| pb::WorkerView {
                    gone: w.presence(now) == jobs::Presence::Gone,
                    left: w.presence(now) == jobs::Presence::Left,
                    worker_id: worker_name(&w.id).to_string(),
                    host: w.host,
                    device: w.device,
                    slots: w.slots,
                    last_seen_unix_ms: w.last_seen_ms,
                    job_ids,
                })
                .collect(),
        }))
    }
}
