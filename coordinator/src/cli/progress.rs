//! Following a sweep on screen (`run`, `watch`): trial-epochs trained of the sweep's total with a
//! rate and an ETA from it, jobs by state, and a word when no worker is taking the jobs. On a
//! terminal a bar redrawn every second; elsewhere (a Slurm or CI log) a line every few seconds
//! while something moved, and one at the end.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use jetsweep_proto::v1 as pb;

use super::rpc_error;
use crate::client::SweepClient;

/// How often a line is printed when stderr is not a terminal: often enough to see a sweep move,
/// rarely enough to keep the log short.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// The rate is of the trial-epochs trained over this last stretch of time.
const RATE_WINDOW: Duration = Duration::from_secs(30);
/// How long jobs may wait with none running before the workers are asked after.
const IDLE_BEFORE_ASKING: Duration = Duration::from_secs(5);

/// Trial-epochs seen over time: the rate and the time left.
#[derive(Debug, Default)]
pub struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    /// Records `epochs_done` at `now`.
    pub fn observe(&mut self, now: Instant, epochs_done: u64) {
        if self.samples.back().is_some_and(|&(_, e)| e == epochs_done) && self.samples.len() > 1 {
            // Nothing trained since the last sample: it moves to now (the window keeps few).
            self.samples.pop_back();
        }
        self.samples.push_back((now, epochs_done));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
    }

    /// Trial-epochs per second over the window, once some were trained in it.
    pub fn per_second(&self) -> Option<f64> {
        let (&(t0, e0), &(t1, e1)) = (self.samples.front()?, self.samples.back()?);
        let seconds = t1.duration_since(t0).as_secs_f64();
        (e1 > e0 && seconds >= 0.5).then(|| (e1 - e0) as f64 / seconds)
    }

    /// Seconds until `left` trial-epochs are trained at the current rate.
    pub fn eta(&self, left: u64) -> Option<f64> {
        self.per_second().map(|r| left as f64 / r)
    }
}

/// A duration as people read it: 42 s, 3.5 min, 2.1 h.
pub fn human(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// Jobs by state, those with none left out: "3 running, 10 queued, 2 done".
fn jobs_part(s: &pb::SweepView) -> String {
    let parts = [
        (s.leased, "running"),
        (s.queued, "queued"),
        (s.paused, "paused at a rung"),
        (s.done, "done"),
        (s.failed, "failed"),
        (s.cancelled, "cancelled"),
    ];
    let said: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    format!("{} jobs: {}", s.total, said.join(", "))
}

/// The progress in one line: trial-epochs, rate, ETA, jobs by state, time watched, and `note`.
pub fn line(s: &pb::SweepView, rate: &Rate, elapsed: Duration, note: &str) -> String {
    let left = s.epochs_total.saturating_sub(s.epochs_done);
    let speed = match (rate.per_second(), left) {
        (_, 0) => String::new(),
        (Some(r), _) => format!(
            ", {r:.1}/s, eta {}",
            human(rate.eta(left).unwrap_or_default())
        ),
        (None, _) => ", eta unknown until epochs are reported".into(),
    };
    let mut out = format!(
        "{}: {}/{} trial-epochs{speed} · {} · {} elapsed",
        s.sweep_id,
        s.epochs_done,
        s.epochs_total,
        jobs_part(s),
        human(elapsed.as_secs_f64())
    );
    if !note.is_empty() {
        out += " · ";
        out += note;
    }
    out
}

/// What to say when jobs wait and none runs: nobody asked for work, or the workers there are busy
/// elsewhere (another sweep, another device).
fn idle_note(workers: &[pb::WorkerView]) -> String {
    let alive = workers.iter().filter(|w| !w.gone && !w.left).count();
    if alive == 0 {
        "no worker has asked for work: start one with `jetsweep-worker --coordinator URL`".into()
    } else {
        format!(
            "{alive} worker(s) connected, none running this sweep's jobs (busy with other sweeps, or for another device)"
        )
    }
}

/// Shows progress on stderr until the sweep ends; returns its final counts.
pub async fn follow(client: &mut SweepClient, sweep_id: &str) -> anyhow::Result<pb::SweepView> {
    use std::io::IsTerminal;
    let mut stream = client.watch(sweep_id).await.map_err(rpc_error)?;
    let on_terminal = std::io::stderr().is_terminal();
    let bar = if on_terminal {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{bar:30}] {wide_msg}")
            .expect("a fixed template is valid")
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut rate = Rate::default();
    let mut last: Option<pb::SweepView> = None;
    let mut printed: Option<(Instant, u64, u32)> = None;
    // Since when jobs have waited with none running, and what the workers said.
    let mut idle_since: Option<Instant> = None;
    let mut note = String::new();
    let mut asked: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            update = stream.message() => {
                match update.map_err(rpc_error)? {
                    Some(update) => if let Some(s) = update.sweep { last = Some(s) },
                    None => break,
                }
            }
            _ = tick.tick() => {}
        }
        let Some(s) = &last else { continue };
        let now = Instant::now();
        rate.observe(now, s.epochs_done);
        if s.leased == 0 && s.queued > 0 {
            let since = *idle_since.get_or_insert(now);
            let due = asked.is_none_or(|at| now.duration_since(at) >= LINE_EVERY);
            if now.duration_since(since) >= IDLE_BEFORE_ASKING && due {
                asked = Some(now);
                if let Ok(workers) = client.workers().await {
                    note = idle_note(&workers);
                }
            }
        } else {
            (idle_since, asked) = (None, None);
            note.clear();
        }
        let text = line(s, &rate, started.elapsed(), &note);
        bar.set_length(s.epochs_total);
        bar.set_position(s.epochs_done);
        bar.set_message(text.clone());
        let ended = s.done + s.failed + s.cancelled;
        let moved = printed.is_none_or(|(at, epochs, jobs)| {
            now.duration_since(at) >= LINE_EVERY && (epochs != s.epochs_done || jobs != ended)
        });
        if !on_terminal && moved {
            eprintln!("{text}");
            printed = Some((now, s.epochs_done, ended));
        }
    }
    bar.finish_and_clear();
    let last = last.unwrap_or_default();
    eprintln!("{}", line(&last, &rate, started.elapsed(), ""));
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_over_the_last_stretch_and_the_eta_follows_it() {
        let t0 = Instant::now();
        let mut rate = Rate::default();
        rate.observe(t0, 0);
        assert_eq!(rate.per_second(), None, "nothing trained yet");
        rate.observe(t0 + Duration::from_secs(2), 20);
        assert_eq!(rate.per_second(), Some(10.0));
        assert_eq!(rate.eta(100), Some(10.0));
        // A still stretch lowers the rate; an old burst leaves the window.
        rate.observe(t0 + Duration::from_secs(4), 20);
        assert_eq!(rate.per_second(), Some(5.0));
        rate.observe(t0 + Duration::from_secs(60), 20);
        rate.observe(t0 + Duration::from_secs(62), 40);
        let r = rate.per_second().unwrap();
        assert!(r < 2.0, "{r}: the burst 60 s ago no longer counts in full");
    }

    #[test]
    fn the_line_counts_trial_epochs_and_says_what_it_cannot_know() {
        let s = pb::SweepView {
            sweep_id: "lab-1".into(),
            total: 6,
            queued: 6,
            epochs_total: 60,
            ..Default::default()
        };
        let text = line(&s, &Rate::default(), Duration::from_secs(3), "no worker");
        assert_eq!(
            text,
            "lab-1: 0/60 trial-epochs, eta unknown until epochs are reported · 6 jobs: 6 queued · 3 s elapsed · no worker"
        );
        let done = pb::SweepView {
            done: 6,
            queued: 0,
            epochs_done: 60,
            ..s
        };
        let text = line(&done, &Rate::default(), Duration::from_secs(100), "");
        assert_eq!(
            text,
            "lab-1: 60/60 trial-epochs · 6 jobs: 6 done · 1.7 min elapsed"
        );
    }

    #[test]
    fn idle_jobs_say_whether_any_worker_is_there() {
        assert!(idle_note(&[]).starts_with("no worker has asked for work"));
        let w = |gone| pb::WorkerView {
            gone,
            ..Default::default()
        };
        assert!(idle_note(&[w(true)]).starts_with("no worker"));
        assert!(idle_note(&[w(false), w(true)]).starts_with("1 worker(s) connected"));
    }
}
