# A throw-away single-node Slurm on this host, for the tests of
# slurm/train.sbatch. Sourced after tests/e2e/lib.sh (which gives $TMP, fail
# and the EXIT trap this extends). Everything lives under $TMP/slurm: its own
# munge key, socket and munged, a slurm.conf ($SLURM_CONF) with free ports, a
# unique cluster name and first job id, state, spool, logs and TmpFS, so that
# two runs of a test at once do not meet. The daemons are stopped by their
# pids on exit (an at_exit hook), never by name.
#
#   slurm_cluster_skip_unless_usable   exit 77 (skip) without root or the packages
#   slurm_cluster_start                munged, slurmctld, slurmd; waits for the node idle
#   slurm_wait_job ID STATE... [SECS]   waits until the job is in one of the states
#   slurm_job_field ID FIELD            a field of `scontrol show job ID` (JobState, Restarts, ...)
#   slurm_cluster_logs                  the daemons' logs on stderr (for failures)

SLURM_DIR="$TMP/slurm"
slurm_pids=()  # munged, slurmctld, slurmd: stopped in reverse order

slurm_cluster_skip_unless_usable() {
  local missing=()
  for tool in munged mungekey slurmctld slurmd sbatch srun scontrol sinfo squeue scancel; do
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null 2>&1 ||
      missing+=("$tool")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "SKIP: missing ${missing[*]} (Debian: munge slurmctld slurmd slurm-client; deploy/install-deps.sh)"
    exit 77
  fi
  if [[ "$(id -u)" != 0 ]]; then
    echo "SKIP: a private Slurm cluster needs root (SlurmUser=root)"
    exit 77
  fi
}

# free_ports N: N distinct TCP ports that are free now.
free_ports() {
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

slurm_cluster_stop() {
  local i pid
  for ((i = ${#slurm_pids[@]} - 1; i >= 0; i--)); do
    pid=${slurm_pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  slurm_pids=()
}

slurm_cluster_logs() {
  for f in "$SLURM_DIR"/log/*.log; do
    [[ -f "$f" ]] || continue
    echo "--- $f (last 40 lines)" >&2
    tail -40 "$f" >&2
  done
}

# slurm_wait WHAT -- CMD...: wait_until CMD succeeds, showing the cluster's
# logs if it gives up.
slurm_wait() {
  local shows=() f
  for f in "$SLURM_DIR"/log/*.log; do [[ -f "$f" ]] && shows+=(--show "$f"); done
  wait_until ${shows[@]+"${shows[@]}"} "$@"
}

# wait_for_pid_file FILE WHAT: a daemon that forks writes its pid file; prints it.
wait_for_pid_file() {
  slurm_wait "$2's pid file $1" -- test -s "$1"
  cat "$1"
}

slurm_cluster_start() {
  local d="$SLURM_DIR" node ctld_port slurmd_port name
  mkdir -p "$d"/{munge,state,spool,log,tmp}
  chmod 711 "$TMP" "$d" "$d/munge"
  node=$(hostname -s)
  read -r ctld_port slurmd_port <<<"$(free_ports 2)"
  name="xfer$$"
  at_exit slurm_cluster_stop

  # munge: a key of our own and a daemon on our own socket.
  dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$d/munge/munge.key"
  /usr/sbin/munged --socket="$d/munge/munge.socket" --key-file="$d/munge/munge.key" \
    --pid-file="$d/munge/munged.pid" --log-file="$d/log/munged.log" \
    --seed-file="$d/munge/munged.seed" --force >"$d/log/munged.start" 2>&1 ||
    { cat "$d/log/munged.start" >&2; fail "munged did not start"; }
  slurm_pids+=("$(wait_for_pid_file "$d/munge/munged.pid" munged)")

  : >"$d/plugstack.conf"
  # Two "GPUs" that are plain files: enough for --gpus-per-node to be
  # scheduled (Slurm drops a GPU without File=); the trainer finds no CUDA
  # and runs on the CPU.
  mkdir -p "$d/dev"
  touch "$d/dev/gpu0" "$d/dev/gpu1"
  cat >"$d/gres.conf" <<CONF
NodeName=$node Name=gpu File=$d/dev/gpu[0-1]
CONF
  cat >"$d/slurm.conf" <<CONF
ClusterName=$name
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket,cred_expire=10
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$d/plugstack.conf
TmpFS=$d/tmp
FirstJobId=$((1000 + RANDOM % 60000))
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
MpiDefault=none
JobRequeue=1
ReturnToService=2
KillWait=10
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 Gres=gpu:2 State=UNKNOWN
PartitionName=xfer Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$d/slurm.conf"

  /usr/sbin/slurmctld -f "$SLURM_CONF" -i >"$d/log/slurmctld.start" 2>&1 ||
    { cat "$d/log/slurmctld.start" >&2; slurm_cluster_logs; fail "slurmctld did not start"; }
  slurm_pids+=("$(wait_for_pid_file "$d/slurmctld.pid" slurmctld)")
  /usr/sbin/slurmd -f "$SLURM_CONF" >"$d/log/slurmd.start" 2>&1 ||
    { cat "$d/log/slurmd.start" >&2; slurm_cluster_logs; fail "slurmd did not start"; }
  slurm_pids+=("$(wait_for_pid_file "$d/slurmd.pid" slurmd)")

  node_idle() { [[ "$(sinfo -h -n "$node" -o %t 2>/dev/null || true)" == idle ]]; }
  slurm_wait "node $node idle" -- node_idle
  echo "slurm cluster $name up: node $node idle, slurmctld port $ctld_port, slurmd port $slurmd_port"
}

# slurm_job_field ID FIELD: e.g. JobState, Restarts, ExitCode.
slurm_job_field() {
  scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

# slurm_wait_job ID SECS STATE...: waits until the job is in one of STATEs.
slurm_wait_job() {
  local id=$1 secs=$2 state=""
  shift 2
  for _ in $(seq 1 $((secs * 2))); do
    state=$(slurm_job_field "$id" JobState)
    for want in "$@"; do [[ "$state" == "$want" ]] && return 0; done
    sleep 0.5
  done
  scontrol show job "$id" >&2 || true
  fail "job $id is '$state' after $secs s, expected one of: $*"
}
