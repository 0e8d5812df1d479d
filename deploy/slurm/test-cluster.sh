#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (slurmctld + slurmd, the CPUs as the node's resources)
# and jetsweep's Slurm paths run through it with sbatch, as a user would:
#   (a) jetsweep-sweep.sbatch: a coordinator and 3 workers in one allocation, the results written
#       to the folder asked for;
#   (b) jetsweep-workers.sbatch as a job array of 3 workers joining a coordinator that runs outside
#       Slurm (as on a login node), with TLS and a token;
#   (c) the same array, one task scancelled while it trains: its job is leased again and the sweep
#       ends with every result exactly once;
#   (d) the same array preempted by a job of a higher-priority partition: Slurm requeues both
#       tasks (--requeue), they run again after it, and again every result is there exactly once.
# Each path checks its counts in the coordinator's state file and says what it found; exit status 1
# if any check failed.
#
#   deploy/slurm/test-cluster.sh          # as root; run by .ci/run (~75 s)
#
# Installs Debian's slurm-wlm and munge if missing, and starts munged if it is not running. The
# cluster's configuration, spool and logs live in a fresh temporary folder (SLURM_CONF points at
# it; /etc/slurm is not touched) and its daemons are stopped at exit. Binaries: $BIN, else
# $CARGO_TARGET_DIR/release or target/release (build them first: cargo build --release).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export BIN=${BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release}
for b in jetsweep jetsweep-worker; do
  [ -x "$BIN/$b" ] || { echo "no $BIN/$b: build first (cargo build --release) or set BIN" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root: it starts slurmctld, slurmd and munged" >&2; exit 1; }
T0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[%6s s] %s\n' "$(since "$T0")" "$*"; }
FAILED=0
fail() { echo "FAILED: $*" >&2; FAILED=1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm, munge (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
command -v openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null

WORK=$(mktemp -d /tmp/jetsweep-slurm.XXXX)
cleanup() {
  # Stop everything this run started: jobs (and wait, briefly, for their steps to end), the
  # daemons, any step daemon left behind (it would retry reaching the gone controller for ever),
  # the outside coordinator.
  if [ -n "${SLURM_CONF:-}" ]; then
    scancel --quiet --user=root >/dev/null 2>&1 || true
    for _ in $(seq 20); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  [ -n "${EXT_PID:-}" ] && kill -TERM "$EXT_PID" 2>/dev/null || true
  for pid in "$WORK/slurmd.pid" "$WORK/slurmctld.pid"; do
    [ -s "$pid" ] && kill -TERM "$(cat "$pid")" 2>/dev/null || true
  done
  for pid in $(pgrep -x slurmstepd 2>/dev/null); do
    if grep -qxz "SLURM_CONF=$WORK/slurm.conf" "/proc/$pid/environ" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  sleep 1
  if [ "$FAILED" = 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept for a look: $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

# --- the cluster -----------------------------------------------------------------------------------
log "starting munge, slurmctld and slurmd"
if ! munge -n >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
HOST=$(hostname)
CPUS=8 # more than this machine has: the jobs' steps share its cores (SlurmdParameters below)
PORT0=$((20000 + $$ % 20000))
mkdir -p "$WORK/spool/ctld" "$WORK/spool/d"
cat > "$WORK/slurm.conf" <<EOF
ClusterName=jetsweep-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmctldPort=$PORT0
SlurmdPort=$((PORT0 + 1))
AuthType=auth/munge
# A requeued job waits this long before it may start again (default 120 s; path d requeues).
AuthInfo=cred_expire=10
StateSaveLocation=$WORK/spool/ctld
SlurmdSpoolDir=$WORK/spool/d
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
# Slurm signals a job's process groups when it ends. (proctrack/linuxproc walks /proc for the
# job's descendants; with it, twice in ~20 runs, the outside coordinator below — not a Slurm
# process — was killed the moment a worker task ended. Sites use proctrack/cgroup.)
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# Look at pending jobs every few seconds (default 60 s / 30 s): a requeued task starts soon after
# it may.
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=10
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST CPUs=$CPUS RealMemory=4000 State=UNKNOWN
# Jobs in "urgent" preempt those in "debug", which go back to the queue (path d).
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
PartitionName=debug Nodes=ALL Default=YES MaxTime=60 State=UP PriorityTier=1
PartitionName=urgent Nodes=ALL MaxTime=60 State=UP PriorityTier=2 PreemptMode=OFF
EOF
export SLURM_CONF="$WORK/slurm.conf"
slurmctld -c
slurmd
for ((i = 0; ; i++)); do
  sinfo -h -o %T 2>/dev/null | grep -q idle && break
  ((i < 300)) || { fail "the node did not come up within 30 s; see $WORK/slurm*.log"; exit 1; }
  sleep 0.1
done
log "cluster up: $(sinfo -h -o '%P %D node(s) %c CPUs %T')"

# State-file checks: every job of SWEEP done, one successful attempt each. Prints
# "JOBS DONE SUCCESSES MOST_ATTEMPTS".
count() {
  python3 - "$1" "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
q = lambda sql: db.execute(sql, (sys.argv[2],)).fetchone()[0] or 0
jobs = "SELECT job_id FROM sweep_jobs WHERE sweep_id = ?"
print(q(f"SELECT COUNT(*) FROM ({jobs})"),
      q(f"SELECT COUNT(*) FROM jobs WHERE state = 'done' AND id IN ({jobs})"),
      q(f"SELECT COUNT(*) FROM attempts WHERE outcome = 'done' AND job_id IN ({jobs})"),
      q(f"SELECT MAX(attempts) FROM jobs WHERE id IN ({jobs})"))
PY
}

# Follows SWEEP until it ends (exit status 0: every job done) while the job array ARRAY still has
# tasks: gives up, status 1, when the array has gone or LIMIT seconds have passed.
watch_while() {
  local sweep=$1 array=$2 limit=$3 start=$SECONDS gone=0
  "$BIN/jetsweep" watch "$sweep" > /dev/null 2>&1 &
  local watcher=$!
  while kill -0 "$watcher" 2>/dev/null; do
    if [ -z "$(squeue -h -j "$array" 2>/dev/null)" ]; then gone=$((gone + 1)); else gone=0; fi
    if ((gone > 10 || SECONDS - start > limit)); then
      kill "$watcher" 2>/dev/null
      echo "the sweep had not ended when its workers had gone or after $limit s" >&2
      return 1
    fi
    sleep 0.5
  done
  wait "$watcher"
}

# Waits (at most 60 s) until the log FILE says a job started; fails the path PATH_NAME otherwise.
until_started() {
  local file=$1 path=$2 i
  for ((i = 0; ; i++)); do
    grep -q "job started" "$file" 2>/dev/null && return 0
    ((i < 600)) || { fail "$path task 0 started no job within 60 s"; return 1; }
    sleep 0.1
  done
}

# Waits (at most 60 s) until the job array ARRAY has left the queue: its workers exit once idle.
until_gone() {
  for _ in $(seq 60); do [ -z "$(squeue -h -j "$1")" ] && return; sleep 1; done
}

# --- (a) one allocation: coordinator + workers --------------------------------------------------
A=$(date +%s.%N)
JOB=$(sbatch --parsable --wait --ntasks=3 --time=10 --output="$WORK/a.out" \
  "$REPO/deploy/slurm/jetsweep-sweep.sbatch" "$REPO/sweeps/quickstart.toml" "$WORK/a-results") \
  || fail "(a) sbatch jetsweep-sweep.sbatch failed: $(tail -n 5 "$WORK/a.out")"
SWEEP=$(grep -o 'sweep [a-z0-9-]* submitted' "$WORK/a.out" | awk '{print $2}')
read -r JOBS DONE OK MOST < <(count "$WORK/a-results/state.db" "$SWEEP" 2>/dev/null || echo 0 0 0 0)
ROWS=$(($(wc -l < "$WORK/a-results/results.csv" 2>/dev/null || echo 1) - 1))
A_SUMMARY="(a) one allocation, 3 workers: job $JOB, sweep $SWEEP: $DONE/$JOBS jobs done, $OK successful attempts, $ROWS result rows, report $( [ -s "$WORK/a-results/report/report.html" ] && echo written || echo MISSING ) ($(since "$A") s)"
log "$A_SUMMARY"
{ [ "$JOBS" = 8 ] && [ "$DONE" = 8 ] && [ "$OK" = 8 ] && [ "$ROWS" -gt 0 ] && [ -s "$WORK/a-results/report/report.html" ]; } \
  || fail "(a) expected 8 jobs done once each, results.csv and the report; slurm output: $(tail -n 20 "$WORK/a.out")"

# A coordinator that cannot start (its state file cannot be made) ends the job at once, with its
# log, instead of waiting for the time limit.
A=$(date +%s.%N)
mkdir -p "$WORK/not-a-state-file"
if STATE="$WORK/not-a-state-file" sbatch --wait --ntasks=1 --time=5 --output="$WORK/a-bad.out" \
  "$REPO/deploy/slurm/jetsweep-sweep.sbatch" "$REPO/sweeps/quickstart.toml" "$WORK/a-bad" >/dev/null 2>&1; then
  fail "(a) a coordinator that could not start did not fail the job"
fi
grep -q "exited before serving" "$WORK/a-bad.out" || fail "(a) the failed start was not explained: $(tail -n 5 "$WORK/a-bad.out")"
A_BAD="(a) a coordinator that cannot start: the job failed after $(since "$A") s, explaining why"
log "$A_BAD"

# --- a coordinator outside Slurm, for (b) and (c) ------------------------------------------------
mkdir -p "$WORK/ext"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "/CN=$HOST" \
  -addext "subjectAltName=DNS:$HOST" -addext "basicConstraints=critical,CA:FALSE" -keyout "$WORK/ext/key.pem" -out "$WORK/ext/cert.pem" 2>/dev/null
export JETSWEEP_TOKEN JETSWEEP_CA="$WORK/ext/cert.pem"
JETSWEEP_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
# In a session of its own, like a service on another machine: nothing Slurm does to the jobs' process
# groups reaches it.
setsid "$BIN/jetsweep" serve --listen 0.0.0.0:0 --state "$WORK/ext/state.db" \
  --tls-cert "$WORK/ext/cert.pem" --tls-key "$WORK/ext/key.pem" > "$WORK/ext/url" 2> "$WORK/ext/coordinator.log" &
EXT_PID=$!
for _ in $(seq 100); do [ -s "$WORK/ext/url" ] && break; sleep 0.1; done
export JETSWEEP_COORDINATOR="https://$HOST:$(sed 's/.*://' "$WORK/ext/url")"
log "outside coordinator serving $JETSWEEP_COORDINATOR"

# --- (b) a job array of workers joining it -------------------------------------------------------
B=$(date +%s.%N)
SWEEP=$("$BIN/jetsweep" submit "$REPO/sweeps/quickstart.toml" 2>/dev/null)
ARRAY=$(IDLE_EXIT=5 sbatch --parsable --array=0-2 --time=10 --output="$WORK/b-%A_%a.out" \
  "$REPO/deploy/slurm/jetsweep-workers.sbatch")
watch_while "$SWEEP" "$ARRAY" 300 || fail "(b) the sweep did not end well; task 0 said: $(tail -n 5 "$WORK/b-${ARRAY}_0.out")"
# The workers leave by themselves once idle for IDLE_EXIT seconds.
until_gone "$ARRAY"
LEFT=$(squeue -h -j "$ARRAY" | wc -l)
read -r JOBS DONE OK MOST < <(count "$WORK/ext/state.db" "$SWEEP")
TASKS=$(grep -l joining "$WORK"/b-*.out | wc -l)
B_SUMMARY="(b) job array of 3 workers ($TASKS joined), outside coordinator: sweep $SWEEP: $DONE/$JOBS jobs done, $OK successful attempts; tasks still queued or running after the sweep: $LEFT ($(since "$B") s)"
log "$B_SUMMARY"
{ [ "$JOBS" = 8 ] && [ "$DONE" = 8 ] && [ "$OK" = 8 ] && [ "$TASKS" = 3 ] && [ "$LEFT" = 0 ]; } \
  || fail "(b) expected 8 jobs done once each by 3 tasks that then left"

outside_alive() {
  kill -0 "$EXT_PID" 2>/dev/null && return 0
  local status=0
  wait "$EXT_PID" || status=$?
  fail "the outside coordinator exited (status $status) before $1; its log: $(tail -n 5 "$WORK/ext/coordinator.log")"
  exit 1
}

# --- (c) a worker task cancelled mid-job ---------------------------------------------------------
outside_alive "(c)"
# Four jobs of ~10 s each, one at a time per worker (--pack 1), 5 s leases.
C=$(date +%s.%N)
cat > "$WORK/c.toml" <<'EOF'
name = "slurm-cancel"
dataset = "synthetic:100000"
lease_timeout_s = 5
[defaults]
model = "jsc-s"
max_epochs = 24
batch_size = 32
[grid]
learning_rate = [1e-3, 2e-3]
seed = [0, 1]
EOF
SWEEP=$("$BIN/jetsweep" submit "$WORK/c.toml" 2>/dev/null)
ARRAY=$(IDLE_EXIT=5 DRAIN=1 WORKER_ARGS="--pack 1" sbatch --parsable --array=0-1 --time=10 \
  --output="$WORK/c-%A_%a.out" "$REPO/deploy/slurm/jetsweep-workers.sbatch")
until_started "$WORK/c-${ARRAY}_0.out" "(c)" || true
scancel "${ARRAY}_0"
log "(c) scancel ${ARRAY}_0 while it trains: $(grep -c "job started" "$WORK/c-${ARRAY}_0.out") job(s) started there"
watch_while "$SWEEP" "$ARRAY" 300 || fail "(c) the sweep did not end well; task 1 said: $(tail -n 5 "$WORK/c-${ARRAY}_1.out")"
until_gone "$ARRAY"
read -r JOBS DONE OK MOST < <(count "$WORK/ext/state.db" "$SWEEP")
HANDED=$(grep -c "handing the running jobs back" "$WORK/c-${ARRAY}_0.out" || true)
C_SUMMARY="(c) 2 workers, task 0 scancelled mid-job (handed back: $HANDED): sweep $SWEEP: $DONE/$JOBS jobs done, $OK successful attempts, most attempts of a job $MOST ($(since "$C") s)"
log "$C_SUMMARY"
{ [ "$JOBS" = 4 ] && [ "$DONE" = 4 ] && [ "$OK" = 4 ] && [ "$MOST" -ge 2 ]; } \
  || fail "(c) expected 4 jobs done once each, one of them leased a second time; task 0 said: $(tail -n 8 "$WORK/c-${ARRAY}_0.out")"

# --- (d) the workers preempted by a more urgent job ------------------------------------------
outside_alive "(d)"
# A job in the higher-priority partition takes every CPU: Slurm stops both worker tasks and puts
# them back in the queue (--requeue); they run again once it ends, and the sweep completes.
D=$(date +%s.%N)
sed -e 's/slurm-cancel/slurm-preempt/' -e 's/learning_rate = \[1e-3, 2e-3\]/learning_rate = [3e-3, 4e-3]/' \
  "$WORK/c.toml" > "$WORK/d.toml"
SWEEP=$("$BIN/jetsweep" submit "$WORK/d.toml" 2>/dev/null)
ARRAY=$(IDLE_EXIT=5 DRAIN=1 WORKER_ARGS="--pack 1" sbatch --parsable --array=0-1 --time=10 \
  --output="$WORK/d-%A_%a.out" --open-mode=append "$REPO/deploy/slurm/jetsweep-workers.sbatch")
until_started "$WORK/d-${ARRAY}_0.out" "(d)" || true
URGENT=$(sbatch --parsable --partition=urgent --ntasks=$CPUS --time=1 --output=/dev/null --wrap "sleep 3")
log "(d) urgent job $URGENT submitted while the workers train"
watch_while "$SWEEP" "$ARRAY" 300 || fail "(d) the sweep did not end well; task 0 said: $(tail -n 5 "$WORK/d-${ARRAY}_0.out")"
until_gone "$ARRAY"
read -r JOBS DONE OK MOST < <(count "$WORK/ext/state.db" "$SWEEP")
RESTARTS=$(for t in 0 1; do scontrol show job "${ARRAY}_$t" 2>/dev/null | grep -o 'Restarts=[0-9]*' | cut -d= -f2; done | awk '{ n += $1 } END { print n + 0 }')
D_SUMMARY="(d) 2 workers preempted by job $URGENT and requeued ($RESTARTS restarts): sweep $SWEEP: $DONE/$JOBS jobs done, $OK successful attempts, most attempts of a job $MOST ($(since "$D") s)"
log "$D_SUMMARY"
{ [ "$JOBS" = 4 ] && [ "$DONE" = 4 ] && [ "$OK" = 4 ] && [ "$MOST" -ge 2 ]; } \
  || fail "(d) expected 4 jobs done once each, one of them leased a second time; task 0 said: $(tail -n 8 "$WORK/d-${ARRAY}_0.out")"

echo
echo "summary:"
echo "  $A_SUMMARY"
echo "  $A_BAD"
echo "  $B_SUMMARY"
echo "  $C_SUMMARY"
echo "  $D_SUMMARY"
echo "  total $(since "$T0") s"
exit "$FAILED"
