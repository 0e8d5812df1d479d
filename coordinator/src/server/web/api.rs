//! The dashboard's JSON: sweeps, one sweep's jobs (paged), results, learning curves, workers. Each
//! call is one read of the store on a blocking thread; the shapes are the pages' and nothing else's.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use crate::jobs::{self, Job, JobState, SweepCounts};
use crate::server::Coordinator;
use jetsweep_proto::metrics::EpochMetrics;
use jetsweep_proto::worker_id::worker_name;

use super::WebError;

/// Most jobs one page of `/api/sweeps/ID/jobs` returns.
pub const MAX_JOBS_PAGE: u32 = 5_000;

#[derive(Serialize)]
pub struct Dataset {
    spec: String,
    sha256: String,
    synthetic: bool,
    validation: String,
}

#[derive(Serialize)]
pub struct SweepJson {
    id: String,
    name: String,
    created_ms: i64,
    /// running, queued, done, failed (some job failed, none left); once cancelled: cancelling
    /// (jobs that were running at the cancel still are), then cancelled for good.
    state: &'static str,
    total: u32,
    queued: u32,
    running: u32,
    done: u32,
    failed: u32,
    cancelled: u32,
    /// Paused at a rung (asynchronous halving).
    paused: u32,
    reused: u32,
    cancel_requested: bool,
    dataset: Option<Dataset>,
}

fn sweep_state(c: &SweepCounts) -> &'static str {
    if c.cancel_requested {
        // Counted as the sweep sees its jobs: what it cancelled stays cancelled.
        if c.leased > 0 || c.queued > 0 {
            "cancelling"
        } else {
            "cancelled"
        }
    } else if c.leased > 0 {
        "running"
    } else if c.queued > 0 || c.paused > 0 {
        "queued"
    } else if c.failed > 0 {
        "failed"
    } else {
        "done"
    }
}

impl From<&SweepCounts> for SweepJson {
    fn from(c: &SweepCounts) -> Self {
        SweepJson {
            id: c.id.clone(),
            name: c.name.clone(),
            created_ms: c.created_ms,
            state: sweep_state(c),
            total: c.total,
            queued: c.queued,
            running: c.leased,
            done: c.done,
            failed: c.failed,
            cancelled: c.cancelled,
            paused: c.paused,
            reused: c.reused,
            cancel_requested: c.cancel_requested,
            dataset: c.dataset.as_ref().map(|d| Dataset {
                spec: d.spec.clone(),
                sha256: d.sha256.clone(),
                synthetic: d.synthetic,
                validation: d.validation.as_str().to_string(),
            }),
        }
    }
}

/// Most sweeps one page of `/api/sweeps` lists (their counts and activity are read per page).
pub const MAX_SWEEPS_PAGE: u32 = 200;

/// A sweep in the list: its counts, and what it has cost and found.
#[derive(Serialize)]
pub struct SweepListed {
    #[serde(flatten)]
    sweep: SweepJson,
    /// Machine time of every attempt so far, seconds.
    compute_seconds: f64,
    /// Seconds until every job has ended at the present pace (mean time of a finished attempt,
    /// as many at once as are running now); none before a job has finished or while none runs.
    eta_seconds: Option<f64>,
    /// The finished trial with the lowest validation loss: its test accuracy at the best epoch.
    best_test_acc: Option<f64>,
    best_job: Option<String>,
}

#[derive(Serialize)]
pub struct SweepsPage {
    sweeps: Vec<SweepListed>,
    /// Sweeps in all pages, and where the next page starts (none after the last).
    total: u32,
    next: Option<u32>,
}

pub async fn sweeps(
    State(c): State<Coordinator>,
    Query(q): Query<PageQuery>,
) -> Result<Json<SweepsPage>, WebError> {
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_SWEEPS_PAGE);
    let from = q.from;
    let now = c.now();
    let coordinator = c.clone();
    let (sweeps, total) = c
        .read(move |tx| {
            let (sweeps, total) = jobs::sweeps_page(tx, from, limit)?;
            let listed = sweeps
                .iter()
                .map(|s| Ok((SweepJson::from(s), coordinator.sweep_activity(tx, s, now)?)))
                .collect::<Result<Vec<_>, crate::Error>>()?;
            Ok((listed, total))
        })
        .await?;
    let shown = sweeps.len() as u32;
    Ok(Json(SweepsPage {
        sweeps: sweeps
            .into_iter()
            .map(|(sweep, activity)| {
                let left = sweep.queued + sweep.running;
                let eta_seconds = match activity.mean_done_ms {
                    Some(mean) if sweep.running > 0 => {
                        Some(mean / 1000.0 * f64::from(left) / f64::from(sweep.running))
                    }
                    _ => None,
                };
                SweepListed {
                    compute_seconds: activity.compute_ms as f64 / 1000.0,
                    eta_seconds,
                    best_test_acc: activity.best.as_ref().map(|b| b.best_test_acc),
                    best_job: activity.best.map(|b| b.job_id),
                    sweep,
                }
            })
            .collect(),
        total,
        next: (from + shown < total).then_some(from + shown),
    }))
}

pub async fn sweep(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
) -> Result<Json<SweepJson>, WebError> {
    let counts = c.read(move |tx| jobs::sweep_counts(tx, &id)).await?;
    Ok(Json(SweepJson::from(&counts)))
}

#[derive(Serialize)]
pub struct JobJson {
    id: String,
    /// queued, running, done, failed, cancelled.
    state: &'static str,
    model: String,
    optimizer: String,
    batch_size: u32,
    max_epochs: u32,
    learning_rate: f64,
    weight_decay: f64,
    seed: u64,
    epochs_done: u32,
    attempts: u32,
    worker: Option<String>,
    latest: Option<EpochMetrics>,
    test_acc: Option<f64>,
    best_epoch: Option<u32>,
    best_test_acc: Option<f64>,
    error: Option<String>,
}

impl From<&Job> for JobJson {
    fn from(j: &Job) -> Self {
        let (worker, result, error) = match &j.state {
            JobState::Leased { worker, .. } => (Some(worker_name(worker).to_string()), None, None),
            JobState::Done { result, .. } => (None, Some(result), None),
            JobState::Failed { error } => (None, None, Some(error.clone())),
            JobState::Cancelled { reason } | JobState::Paused { reason } => {
                (None, None, Some(reason.clone()))
            }
            JobState::Queued => (None, None, None),
        };
        // A job not running now names who ran it last, when the list read it.
        let worker =
            worker.or_else(|| j.last_worker.as_deref().map(|w| worker_name(w).to_string()));
        JobJson {
            id: j.id.clone(),
            state: j.state.status().shown(),
            model: j.trial.model.name.clone(),
            optimizer: j.trial.optimizer.to_string(),
            batch_size: j.trial.batch_size,
            max_epochs: j.trial.max_epochs,
            learning_rate: j.trial.learning_rate,
            weight_decay: j.trial.weight_decay,
            seed: j.trial.seed,
            epochs_done: j.epochs_done,
            attempts: j.attempts,
            worker,
            latest: j.latest.clone(),
            test_acc: result.map(|r| r.test_acc),
            best_epoch: result.map(|r| r.best_epoch),
            best_test_acc: result.map(|r| r.best_test_acc),
            error,
        }
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    from: u32,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub struct JobsPage {
    jobs: Vec<JobJson>,
    /// Where the next page starts (`?from=`), if there is one.
    next: Option<u32>,
}

pub async fn jobs(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<JobsPage>, WebError> {
    let limit = q.limit.unwrap_or(MAX_JOBS_PAGE).clamp(1, MAX_JOBS_PAGE);
    let (page, next) = c
        .read(move |tx| jobs::jobs_page(tx, &id, q.from, limit))
        .await?;
    Ok(Json(JobsPage {
        jobs: page.iter().map(JobJson::from).collect(),
        next,
    }))
}

#[derive(Serialize)]
pub struct CurvesJson {
    /// Per job id: its epochs in order (for a job tried more than once, each epoch as its latest
    /// attempt reported it).
    jobs: std::collections::BTreeMap<String, Vec<EpochMetrics>>,
}

/// Most trials whose curves one call returns (`?limit=`; the first in grid order).
pub const MAX_CURVES: u32 = 1_000;

#[derive(Deserialize)]
pub struct CurvesQuery {
    limit: Option<u32>,
}

pub async fn curves(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    Query(q): Query<CurvesQuery>,
) -> Result<Json<CurvesJson>, WebError> {
    let limit = q.limit.unwrap_or(MAX_CURVES).clamp(1, MAX_CURVES);
    let jobs = c.read(move |tx| jobs::sweep_curves(tx, &id, limit)).await?;
    Ok(Json(CurvesJson { jobs }))
}

/// An attempt at a trial, for its page.
#[derive(Serialize)]
pub struct AttemptJson {
    attempt: u32,
    worker: String,
    started_ms: i64,
    /// None while it runs.
    ended_ms: Option<i64>,
    /// done, failed, expired, paused, cancelled, …; none while it runs.
    outcome: Option<String>,
    error: Option<String>,
    /// Trials in its pack (1: alone); none when unknown.
    pack_size: Option<u32>,
    epochs: Vec<EpochMetrics>,
}

/// A seed of the trial's grid point, with its curve.
#[derive(Serialize)]
pub struct SeedJson {
    #[serde(flatten)]
    job: JobJson,
    curve: Vec<EpochMetrics>,
}

/// `/api/sweeps/ID/trials/JOB`: one trial, its attempts and its point's seeds.
#[derive(Serialize)]
pub struct TrialJson {
    sweep: String,
    job: JobJson,
    attempts: Vec<AttemptJson>,
    point: Vec<SeedJson>,
}

pub async fn trial(
    State(c): State<Coordinator>,
    Path((id, job)): Path<(String, String)>,
) -> Result<Json<TrialJson>, WebError> {
    let sweep = id.clone();
    let t = c
        .read(move |tx| jobs::trial_detail(tx, &sweep, &job))
        .await?;
    Ok(Json(TrialJson {
        sweep: id,
        job: JobJson::from(&t.job),
        attempts: t
            .attempts
            .into_iter()
            .map(|a| AttemptJson {
                attempt: a.attempt,
                worker: worker_name(&a.worker_id).to_string(),
                started_ms: a.started_ms,
                ended_ms: a.ended_ms,
                outcome: a.outcome,
                error: a.error,
                pack_size: a.pack_size,
                epochs: a.epochs,
            })
            .collect(),
        point: t
            .point
            .iter()
            .map(|(j, curve)| SeedJson {
                job: JobJson::from(j),
                curve: curve.clone(),
            })
            .collect(),
    }))
}

/// A sweep's early stopping: its rule, each rung's tally, and the trial-epochs trained.
#[derive(Serialize)]
pub struct StoppingJson {
    /// none | halving | median.
    rule: String,
    mode: String,
    metric: String,
    eta: u32,
    rungs: Vec<jobs::RungTally>,
    trial_epochs: u64,
    full_epochs: u64,
}

pub async fn stopping(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
) -> Result<Json<StoppingJson>, WebError> {
    let st = c.read(move |tx| jobs::rung_tallies(tx, &id)).await?;
    let settings = st.settings.unwrap_or_default();
    Ok(Json(StoppingJson {
        rule: settings.rule,
        mode: settings.mode,
        metric: settings.metric,
        eta: settings.eta,
        rungs: st.rungs,
        trial_epochs: st.trial_epochs,
        full_epochs: st.full_epochs,
    }))
}

#[derive(Serialize)]
pub struct WorkerJson {
    name: String,
    host: String,
    device: String,
    slots: u32,
    last_seen_ms: i64,
    /// alive, left (exited cleanly) or gone (silent without a goodbye).
    state: &'static str,
    jobs: Vec<String>,
    /// Jobs it finished in the last hour.
    jobs_last_hour: u32,
}

pub async fn workers(State(c): State<Coordinator>) -> Result<Json<Vec<WorkerJson>>, WebError> {
    let now = c.now();
    let hour_ago = now - 3_600_000;
    let (workers, done) = c
        .read(move |tx| {
            Ok((
                jobs::list_workers(tx)?,
                jobs::jobs_done_since(tx, hour_ago)?,
            ))
        })
        .await?;
    Ok(Json(
        workers
            .into_iter()
            .map(|(w, jobs)| WorkerJson {
                jobs_last_hour: done.get(&w.id).copied().unwrap_or(0),
                name: worker_name(&w.id).to_string(),
                state: match w.presence(now) {
                    jobs::Presence::Alive => "alive",
                    jobs::Presence::Left => "left",
                    jobs::Presence::Gone => "gone",
                },
                host: w.host,
                device: w.device,
                slots: w.slots,
                last_seen_ms: w.last_seen_ms,
                jobs,
            })
            .collect(),
    ))
}

/// An event of `/api/sweeps/ID/events`: the sweep's counts, the epochs reported since the last
/// event (job id and metrics) and the jobs that changed.
#[derive(Serialize)]
struct Changes {
    sweep: SweepJson,
    epochs: Vec<(String, EpochMetrics)>,
    jobs: Vec<JobJson>,
}

/// Most epochs or jobs one event carries (more follow in the next).
const MAX_EVENT_ITEMS: u32 = 5_000;

/// Server-sent events for one sweep: after each store commit (at most twice a second) what changed
/// since the last event, so a page shows epochs as they are reported without re-reading everything.
/// A comment line every 15 s keeps idle connections open.
pub async fn events(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
) -> Result<axum::response::Response, WebError> {
    use axum::response::IntoResponse;
    let permit = match c.event_stream_slot(super::peer_ip(&extensions)) {
        Ok(slot) => slot,
        Err(over) => {
            let why = match over {
                crate::server::connections::Over::Total => "too many live pages are open",
                crate::server::connections::Over::PerAddress => {
                    "too many live pages are open from your address"
                }
            };
            return Ok((
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("{why}; close some or reload later\n"),
            )
                .into_response());
        }
    };
    let first = id.clone();
    let mut cursor = c
        .read(move |tx| {
            jobs::sweep_head(tx, &first)?;
            jobs::last_epoch_row(tx)
        })
        .await?;
    let (out, stream) = tokio::sync::mpsc::channel::<Result<String, std::convert::Infallible>>(4);
    let mut commits = c.commits();
    tokio::spawn(async move {
        let _permit = permit;
        let mut since = c.now();
        loop {
            let changed = tokio::select! {
                r = commits.changed() => r.is_ok(),
                _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => false,
                // A closed page frees its slot at once, however quiet the sweep.
                _ = out.closed() => return,
            };
            if !changed {
                if out.send(Ok(": keep-alive\n\n".into())).await.is_err() {
                    return;
                }
                continue;
            }
            // Commits come thousands a second under load: one event per half second at most.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let read_at = c.now();
            let (sweep, after, from) = (id.clone(), cursor, since);
            let read = c
                .read(move |tx| {
                    let counts = jobs::sweep_counts(tx, &sweep)?;
                    let changes = jobs::sweep_changes(tx, &sweep, after, from, MAX_EVENT_ITEMS)?;
                    Ok((counts, changes))
                })
                .await;
            let Ok((counts, (epochs, changed, next))) = read else {
                return;
            };
            if epochs.is_empty() && changed.is_empty() {
                continue;
            }
            cursor = next;
            since = read_at;
            let event = Changes {
                sweep: SweepJson::from(&counts),
                epochs,
                jobs: changed.iter().map(JobJson::from).collect(),
            };
            let data = serde_json::to_string(&event).expect("events serialise");
            if out.send(Ok(format!("data: {data}\n\n"))).await.is_err() {
                return;
            }
        }
    });
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/event-stream"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(stream)),
    )
        .into_response())
}
