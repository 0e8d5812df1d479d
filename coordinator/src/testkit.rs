//! For tests (this crate's and the end-to-end tests in `tests/`): a real coordinator on
//! `127.0.0.1:0` over a state file in a folder the test owns, on a clock the test moves by hand,
//! reached through the same client helper the CLI and the worker use; and the fixture sweeps.

use std::path::Path;
use std::time::Duration;

use jetsweep_proto::auth::Channel;
use jetsweep_proto::client;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_client::SweepServiceClient;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tokio::net::TcpListener;

use crate::access::DataAccess;
use crate::client::SweepClient;
use crate::clock::ManualClock;
use crate::server::{Coordinator, StartConfig, start};
use crate::store::lock::StateLock;

/// Fixture sweep files.
pub mod sweeps {
    /// 4 tiny jobs (2 batch sizes × 2 seeds, 2 epochs) on 2,000 synthetic jets; 5 s leases.
    pub const TINY: &str = r#"
name = "tiny"
dataset = "synthetic:2000"
lease_timeout_s = 5
[defaults]
max_epochs = 2
learning_rate = 1e-3
[grid]
batch_size = [64, 128]
seed = [0, 1]
"#;

    /// Jobs of a few seconds each (jsc-s on 100,000 jets, batch 32, 8 epochs: about 2.5 s), one
    /// per seed of `seeds` ("0,1,2"), with leases of `lease_s` seconds: processes can be killed,
    /// cut off or signalled while one runs.
    pub fn slow(name: &str, seeds: &str, lease_s: u32) -> String {
        format!(
            "name = \"{name}\"\ndataset = \"synthetic:100000\"\nlease_timeout_s = {lease_s}\n[defaults]\nmodel = \"jsc-s\"\nmax_epochs = 8\nbatch_size = 32\nlearning_rate = 1e-3\n[grid]\nseed = [{seeds}]\n"
        )
    }

    /// 8 quick jobs (2 batch sizes × 2 learning rates × 2 seeds, 3 epochs) on 20,000 synthetic
    /// jets; the shortest lease allowed.
    pub const QUICK: &str = r#"
name = "quick"
dataset = "synthetic:20000"
lease_timeout_s = 3
[defaults]
max_epochs = 3
[grid]
batch_size = [128, 256]
learning_rate = [1e-3, 1e-4]
seed = [0, 1]
"#;
}

/// Sweep files every door must refuse — the parser, the SweepService, `jetsweep submit`, the
/// chaos suite — each with what the refusal must name. The one table of them.
pub mod bad_sweeps {
    /// A sweep file to refuse.
    pub struct BadSweep {
        /// What is wrong, in words.
        pub what: &'static str,
        pub toml: String,
        /// Words the refusal must contain (the key, the value, the limit).
        pub names: &'static [&'static str],
        /// Refused for its size (RESOURCE_EXHAUSTED on the wire), not for a value
        /// (INVALID_ARGUMENT).
        pub too_big: bool,
    }

    fn bad(what: &'static str, toml: &str, names: &'static [&'static str]) -> BadSweep {
        BadSweep {
            what,
            toml: toml.to_string(),
            names,
            too_big: false,
        }
    }

    /// Every bad sweep file of the table.
    pub fn all() -> Vec<BadSweep> {
        let list = |n: std::ops::RangeInclusive<u32>| {
            n.map(|v| v.to_string()).collect::<Vec<_>>().join(",")
        };
        vec![
            bad(
                "an unknown key",
                "name = \"x\"\nbatchsize = 3\n",
                &["batchsize"],
            ),
            bad(
                "an unknown grid key",
                "name = \"x\"\n[grid]\nbatch_sise = [1]\n",
                &["batch_sise"],
            ),
            bad(
                "an empty grid list",
                "name = \"x\"\n[grid]\nseed = []\n",
                &["grid.seed", "empty"],
            ),
            bad(
                "batch size 0",
                "name = \"x\"\n[grid]\nbatch_size = [64, 0]\n",
                &["batch_size", "0"],
            ),
            bad(
                "a negative batch size",
                "name = \"x\"\n[grid]\nbatch_size = [-1]\n",
                &["batch_size"],
            ),
            bad(
                "a negative learning rate",
                "name = \"x\"\n[grid]\nlearning_rate = [1e-3, -1e-3]\n",
                &["learning_rate", "-0.001"],
            ),
            bad(
                "learning rate 0",
                "name = \"x\"\n[defaults]\nlearning_rate = 0.0\n",
                &["learning_rate", "0"],
            ),
            bad(
                "a learning rate of NaN",
                "name = \"x\"\n[grid]\nlearning_rate = [nan]\n",
                &["learning_rate", "NaN"],
            ),
            bad(
                "an unknown model",
                "name = \"x\"\n[grid]\nmodel = [\"jsc-tiny\", \"resnet50\"]\n",
                &["model", "resnet50"],
            ),
            bad(
                "an unknown dataset",
                "name = \"x\"\ndataset = \"imagenet\"\n",
                &["dataset", "imagenet"],
            ),
            bad(
                "an unknown optimizer",
                "name = \"x\"\n[grid]\noptimizer = [\"lbfgs\"]\n",
                &["optimizer", "lbfgs"],
            ),
            bad("0 attempts", "name = \"x\"\nattempts = 0\n", &["attempts"]),
            bad(
                "4 billion attempts",
                "name = \"x\"\nattempts = 4000000000\n",
                &["attempts", "1 to 100"],
            ),
            BadSweep {
                toml: format!("name = \"{}\"\n", "n".repeat(129)),
                ..bad("a 129-character name", "", &["name", "at most 128"])
            },
            bad(
                "a billion synthetic jets",
                "name = \"x\"\ndataset = \"synthetic:1000000000\"\n",
                &["dataset", "at most 1000000"],
            ),
            BadSweep {
                toml: format!(
                    "name = \"x\"\n[defaults]\nmodel = \"mlp:{}\"\n",
                    vec!["8"; 17].join(",")
                ),
                ..bad(
                    "17 hidden layers",
                    "",
                    &["model", "at most 16 hidden layers"],
                )
            },
            BadSweep {
                toml: format!("name = \"x\"\n# {}\n", "x".repeat(300_000)),
                ..bad("a 300 KB file", "", &["bytes", "262144"])
            },
            bad(
                "a lease shorter than three heartbeats",
                "name = \"x\"\nlease_timeout_s = 1\n",
                &["lease_timeout_s", "three heartbeats"],
            ),
            bad(
                "a name with a terminal escape",
                "name = \"x\\u001b]0;pwned\\u0007\"\n",
                &["name", "control character"],
            ),
            bad(
                "a priority of 0",
                "name = \"x\"\npriority = 0\n",
                &["priority", "above 0"],
            ),
            bad(
                "an infinite priority",
                "name = \"x\"\npriority = inf\n",
                &["priority", "inf"],
            ),
            bad(
                "a negative max_running",
                "name = \"x\"\nmax_running = -1\n",
                &["max_running", "-1"],
            ),
            bad(
                "a device class that is not one",
                "name = \"x\"\ndevice = \"gpu\"\n",
                &["device", "gpu", "cuda"],
            ),
            bad(
                "4 billion epochs",
                "name = \"x\"\n[defaults]\nmax_epochs = 4294967295\n",
                &["max_epochs", "4294967295"],
            ),
            bad("broken TOML", "name = \"x\"\n[grid\n", &["sweep file"]),
            bad("no name", "dataset = \"synthetic\"\n", &["name"]),
            BadSweep {
                toml: format!(
                    "name = \"x\"\n[grid]\nseed = [{}]\nbatch_size = [{}]\nmax_epochs = [{}]\nlearning_rate = [{}]\nmodel = [{}]\n",
                    list(0..=10),
                    list(1..=10),
                    list(1..=10),
                    (1..=10)
                        .map(|v| format!("{v}e-3"))
                        .collect::<Vec<_>>()
                        .join(","),
                    (1..=10)
                        .map(|v| format!("\"mlp:{v}\""))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                too_big: true,
                ..bad("a grid of 110,000 cells", "", &["110000 cells", "100000"])
            },
            bad(
                "an inverted range",
                &search("learning_rate = { log_uniform = [1e-1, 1e-5] }", ""),
                &["search.space.learning_rate.log_uniform", "inverted", "[0.1, 0.00001]"],
            ),
            bad(
                "an empty range",
                &search("weight_decay = { uniform = [1e-3, 1e-3] }", ""),
                &["search.space.weight_decay.uniform", "empty range"],
            ),
            bad(
                "a log range touching 0",
                &search("weight_decay = { log_uniform = [0.0, 1e-3] }", ""),
                &["search.space.weight_decay.log_uniform", "[0, 0.001]", "above 0"],
            ),
            bad(
                "an unknown distribution, spelled as Ray does",
                &search("learning_rate = { loguniform = [1e-5, 1e-1] }", ""),
                &["search.space.learning_rate.loguniform", "tune.loguniform", "log_uniform"],
            ),
            bad(
                "a key drawn and listed",
                &format!("{}[grid]\nlearning_rate = [1e-3]\n", search("learning_rate = { log_uniform = [1e-5, 1e-1] }", "")),
                &["search.space.learning_rate", "[grid]"],
            ),
            bad(
                "an unknown keep_models",
                "name = \"x\"\nkeep_models = \"all\"\n",
                &["keep_models", "all", "best-and-last"],
            ),
            bad(
                "eta below 2",
                &search("learning_rate = { log_uniform = [1e-5, 1e-1] }", "rule = \"halving\"\neta = 1\n"),
                &["search.stop.eta", "1", "2 or more"],
            ),
            bad(
                "min_epochs over max_epochs",
                &search("learning_rate = { log_uniform = [1e-5, 1e-1] }", "rule = \"halving\"\nmin_epochs = 30\n"),
                &["search.stop.min_epochs", "30", "max_epochs 20"],
            ),
            bad(
                "a stratify key that is not swept",
                &search("learning_rate = { log_uniform = [1e-5, 1e-1] }", "rule = \"halving\"\nstratify = [\"model\"]\n"),
                &["search.stop.stratify", "model", "not swept"],
            ),
            BadSweep {
                toml: "name = \"x\"\n[search]\nmethod = \"random\"\npoints = 100001\n[search.space]\nlearning_rate = { log_uniform = [1e-5, 1e-1] }\n".into(),
                ..bad("points over the job limit", "", &["search.points", "100001", "1 to 100000"])
            },
            BadSweep {
                toml: format!("{}[grid]\nseed = [0, 1, 2]\n", search("learning_rate = { log_uniform = [1e-5, 1e-1] }", "").replace("points = 8", "points = 40000")),
                too_big: true,
                ..bad("40,000 points of 3 seeds", "", &["120000 cells", "100000"])
            },
            bad(
                "a trial seed in [search]",
                "name = \"x\"\n[search]\nmethod = \"random\"\nseed = 3\n",
                &["search.seed", "search_seed"],
            ),
            bad(
                "Ray's num_samples",
                "name = \"x\"\n[search]\nnum_samples = 3\n",
                &["search.num_samples", "points", "Ray Tune"],
            ),
            bad(
                "W&B's bayes",
                "name = \"x\"\n[search]\nmethod = \"bayes\"\n",
                &["search.method", "bayes", "tpe"],
            ),
            bad(
                "TPE with sync halving",
                "name = \"x\"\n[search]\nmethod = \"tpe\"\npoints = 20\n[search.space]\nlearning_rate = { log_uniform = [1e-4, 1e-2] }\n[search.stop]\nrule = \"halving\"\nmode = \"sync\"\n",
                &["search.stop.mode", "tpe", "async"],
            ),
            bad(
                "TPE crossed with a grid key",
                "name = \"x\"\n[search]\nmethod = \"tpe\"\npoints = 20\n[search.space]\nlearning_rate = { log_uniform = [1e-4, 1e-2] }\n[grid]\nbatch_size = [64, 128]\n",
                &["grid", "tpe", "only seeds"],
            ),
            bad(
                "a test metric",
                "name = \"x\"\n[search]\nmetric = \"test_acc\"\n",
                &["search.metric", "test_acc", "never choose"],
            ),
            bad(
                "a space for a grid",
                "name = \"x\"\n[search.space]\nlearning_rate = { log_uniform = [1e-5, 1e-1] }\n",
                &["search.method", "grid", "random"],
            ),
            bad(
                "a space of 3 points for 8",
                &search("batch_size = { choice = [64, 128, 256] }", ""),
                &["search.points", "only 3 distinct points"],
            ),
            bad(
                "width without depth",
                &search("width = { int_uniform = [4, 64] }", ""),
                &["search.space.width", "depth"],
            ),
            bad(
                "a budget no drawn network meets",
                &search("width = { int_uniform = [4, 64] }\ndepth = { int_uniform = [1, 2] }", "")
                    .replace("[search.space]", "max_params = 100\n[search.space]"),
                &["search.points", "within the budget"],
            ),
            bad(
                "a budget the listed model is over",
                "name = \"x\"\n[defaults]\nmodel = \"jsc-s\"\n[search]\nmax_params = 1000\n",
                &["search.max_params", "jsc-s", "5615"],
            ),
        ]
    }

    /// A random search of 8 points over `space`, with `stop` as its `[search.stop]`.
    fn search(space: &str, stop: &str) -> String {
        format!(
            "name = \"x\"\nval_fraction = 0.2\n[search]\nmethod = \"random\"\npoints = 8\n[search.space]\n{space}\n[search.stop]\n{stop}"
        )
    }
}

/// Where the test clock starts: an ordinary moment (2026-01-01), far from 0 and from overflow.
pub const CLOCK_START: i64 = 1_767_225_600_000;

/// A coordinator serving on loopback until dropped.
pub struct TestCoordinator {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The coordinator's time; move it with [`ManualClock::advance`].
    pub clock: ManualClock,
    /// The coordinator itself, for what the wire does not offer (expiring leases now).
    pub coordinator: Coordinator,
    /// The generated clients, for tests of the wire itself.
    pub sweeps: SweepServiceClient<Channel>,
    pub workers: WorkerServiceClient<Channel>,
    /// The typed client the CLI uses.
    pub client: SweepClient,
    _stop: tokio::sync::oneshot::Sender<()>,
    _lock: StateLock,
}

impl TestCoordinator {
    /// Starts a coordinator with its state file and datasets under `dir`.
    pub async fn start(dir: &Path) -> TestCoordinator {
        Self::start_with(dir, ManualClock::at(CLOCK_START)).await
    }

    /// Starts a coordinator on `clock` (a restart carries on the clock of the first start).
    pub async fn start_with(dir: &Path, clock: ManualClock) -> TestCoordinator {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = start(
            StartConfig {
                state: dir.join("state.db"),
                data_dir: dir.to_path_buf(),
                clock: clock.shared(),
                access: DataAccess::Local,
                token: None,
                credentials: None,
                tls: None,
                holder: "a test".into(),
                connections: Default::default(),
                metrics_public: false,
            },
            listener,
            async {
                let _ = stopped.await;
            },
        )
        .await
        .expect("start the test coordinator");
        let channel = client::connect(&started.url, None, None)
            .await
            .expect("connect to the test coordinator");
        let sweeps = client::sweep_client(channel.clone());
        TestCoordinator {
            url: started.url,
            clock,
            coordinator: started.coordinator,
            client: SweepClient::new(sweeps.clone()),
            sweeps,
            workers: client::worker_client(channel),
            _lock: started.lock,
            _stop: stop,
        }
    }

    /// Submits a sweep file that must be accepted.
    pub async fn submit(&mut self, toml: &str) -> pb::SweepView {
        self.client
            .submit(toml)
            .await
            .expect("the sweep is accepted")
    }

    /// The sweep `id` as the SweepService shows it (it must exist).
    pub async fn sweep(&mut self, id: &str) -> pb::SweepView {
        self.client.sweep(id).await.expect("the sweep exists")
    }

    /// Registers a worker of this protocol version; returns its id.
    pub async fn register(&mut self, host: &str, slots: u32) -> String {
        self.workers
            .register(pb::RegisterRequest {
                protocol_version: jetsweep_proto::PROTOCOL_VERSION,
                host: host.into(),
                device: "cpu".into(),
                slots,
            })
            .await
            .expect("registration is accepted")
            .into_inner()
            .worker_id
    }

    /// Leases up to `max` jobs to `worker`, one per slot (a new request each time).
    pub async fn lease(&mut self, worker: &str, max: u32) -> Vec<pb::Lease> {
        self.workers
            .lease_jobs(pb::LeaseJobsRequest {
                pack_size: 1,
                worker_id: worker.into(),
                slots: max,
                request_id: String::new(),
            })
            .await
            .expect("leasing is accepted")
            .into_inner()
            .packs
            .into_iter()
            .flat_map(|p| p.leases)
            .collect()
    }

    /// Completes `lease` for `worker` with a one-epoch result of test accuracy `test_acc`.
    pub async fn complete(&mut self, worker: &str, lease: &pb::Lease, test_acc: f64) {
        self.workers
            .complete_job(pb::CompleteJobRequest {
                lease_id: lease.lease_id.clone(),
                worker_id: worker.into(),
                result: Some(pb::TrialResult {
                    params: 117,
                    test_acc,
                    best_epoch: 1,
                    best_test_acc: test_acc,
                }),
                ..Default::default()
            })
            .await
            .expect("the completion is accepted");
    }

    /// Moves the coordinator's time forward by `by` and expires the leases that outlived it.
    pub async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.coordinator.expire_leases().await.expect("expiry runs");
    }
}

/// GET `path` from the coordinator at `url` (`http://HOST:PORT`) over plain HTTP/1.1, with the
/// token as a bearer header if given: the status and the body (chunked bodies joined).
pub fn http_get(url: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("the coordinator listens");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, body.to_string());
    }
    let (mut out, mut rest) = (String::new(), body);
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    (status, out)
}
