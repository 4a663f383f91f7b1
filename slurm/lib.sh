# Helpers of slurm/train.sbatch (sourced, not run). One job attempt:
#
#   1. settings: defaults < config file < environment (xfer_load_settings)
#   2. the coordinator on the batch host, its state under the run directory
#      so that a requeued attempt finds the run, its metrics and checkpoints;
#      the script waits until its gRPC health check says SERVING
#   3. one trainer per task: `srun --mpi=pmix`, else `mpirun` inside the
#      allocation (logged), always with `--resume auto`
#   4. SIGUSR1 to the batch shell (--signal=B:USR1@120, or
#      `scancel --batch --signal=USR1`): forwarded to the trainers, which
#      checkpoint at the next step boundary and exit 75; then the coordinator
#      is stopped and the job requeued (`scontrol requeue`)
#   5. SIGTERM (scancel, the time limit): forwarded, the coordinator stopped,
#      no requeue
#   6. the run's state at the coordinator (xfer_run_state) has the last word:
#      completed is success whatever the exit status, preempted is requeued
#
# Only processes this script started are signalled, by their pids.

# Settings (docs/operations.md#slurm lists them with their defaults). Each
# may come from the environment or the config file (--config FILE or
# $XFER_CONFIG: bash assignments, slurm/train.env.example); the environment
# wins over the file.
xfer_settings=(
  XFER_BIN              # where coordinator, trainer, coordctl are. Default: $SLURM_SUBMIT_DIR/build/bin
  XFER_RUN_NAME         # the run's name at the coordinator. REQUIRED
  XFER_RUN_DIR          # coordinator state, checkpoints, report. Default: $SLURM_SUBMIT_DIR/runs/$XFER_RUN_NAME
  XFER_DATASETS         # NAME=DIR ... the coordinator serves (space-separated). REQUIRED
  XFER_TRAIN_ARGS       # flags for `trainer train` (besides those after `--`)
  XFER_RESUME           # --resume of every attempt. Default: auto (none: do not pass one)
  XFER_LAUNCHER         # auto, srun or mpirun. Default: auto (srun if it has PMIx, else mpirun)
  XFER_SRUN_MPI         # srun's --mpi. Default: pmix
  XFER_SRUN_ARGS        # extra srun flags
  XFER_MPIRUN_ARGS      # extra mpirun flags
  XFER_COORDINATOR_PORT # port on the batch host. Default: 0 (a free one)
  XFER_COORDINATOR_ARGS # extra coordinator flags (--keep-last, --tensorboard-dir, TLS ...)
  XFER_TOKEN_FILE       # admin token for the coordinator and trainers. Default: none on one node; made in the run dir on several
  XFER_TLS_CA           # CA of a TLS coordinator (--tls-cert/--tls-key in XFER_COORDINATOR_ARGS). Default: none (plaintext)
  XFER_HEALTH_TIMEOUT   # seconds to wait for SERVING. Default: 60
  XFER_REQUEUE          # 1: requeue after a preemption checkpoint; 0: end the job. Default: 1
)

xfer_log() {
  echo "[xfer-slurm $(date -u +%Y-%m-%dT%H:%M:%SZ)] job ${SLURM_JOB_ID:-?} attempt $((${SLURM_RESTART_COUNT:-0} + 1)): $*" >&2
}

xfer_die() {
  xfer_log "error: $*"
  exit 2
}

# xfer_load_settings FILE: sources FILE (may be empty: no file), keeping the
# values the environment already set, then fills in defaults and checks them.
xfer_load_settings() {
  local file=$1 name
  declare -A from_env=()
  for name in "${xfer_settings[@]}"; do
    [[ -n "${!name+set}" ]] && from_env[$name]=${!name}
  done
  if [[ -n "$file" ]]; then
    [[ -r "$file" ]] || xfer_die "config file '$file' is not readable (expected bash assignments like slurm/train.env.example)"
    # shellcheck disable=SC1090
    source "$file" || xfer_die "config file '$file' failed to load"
  fi
  for name in "${!from_env[@]}"; do
    printf -v "$name" '%s' "${from_env[$name]}"
  done

  local submit=${SLURM_SUBMIT_DIR:-$PWD}
  [[ -n "${XFER_RUN_NAME:-}" ]] || xfer_die "no run name: set XFER_RUN_NAME (environment or config file)"
  [[ "$XFER_RUN_NAME" =~ ^[A-Za-z0-9._-]+$ ]] ||
    xfer_die "XFER_RUN_NAME '$XFER_RUN_NAME' has characters other than letters, digits, '.', '_', '-'"
  [[ -n "${XFER_DATASETS:-}" ]] || xfer_die "no dataset: set XFER_DATASETS to NAME=DIR (space-separated for several)"
  XFER_BIN=${XFER_BIN:-$submit/build/bin}
  XFER_RUN_DIR=${XFER_RUN_DIR:-$submit/runs/$XFER_RUN_NAME}
  XFER_TRAIN_ARGS=${XFER_TRAIN_ARGS:-}
  XFER_RESUME=${XFER_RESUME-auto}
  XFER_LAUNCHER=${XFER_LAUNCHER:-auto}
  XFER_SRUN_MPI=${XFER_SRUN_MPI:-pmix}
  XFER_SRUN_ARGS=${XFER_SRUN_ARGS:-}
  XFER_MPIRUN_ARGS=${XFER_MPIRUN_ARGS:-}
  XFER_COORDINATOR_PORT=${XFER_COORDINATOR_PORT:-0}
  XFER_COORDINATOR_ARGS=${XFER_COORDINATOR_ARGS:-}
  XFER_TOKEN_FILE=${XFER_TOKEN_FILE:-}
  XFER_TLS_CA=${XFER_TLS_CA:-}
  XFER_HEALTH_TIMEOUT=${XFER_HEALTH_TIMEOUT:-60}
  XFER_REQUEUE=${XFER_REQUEUE:-1}

  local d tool
  for tool in coordinator trainer coordctl; do
    [[ -x "$XFER_BIN/$tool" ]] || xfer_die "$XFER_BIN/$tool is missing or not executable: set XFER_BIN to the build's bin folder"
  done
  for d in $XFER_DATASETS; do
    [[ "$d" == ?*=?* ]] || xfer_die "XFER_DATASETS entry '$d' is not NAME=DIR"
    [[ -d "${d#*=}" ]] || xfer_die "dataset folder '${d#*=}' (XFER_DATASETS entry '$d') does not exist"
  done
  case "$XFER_LAUNCHER" in auto | srun | mpirun) ;;
    *) xfer_die "XFER_LAUNCHER '$XFER_LAUNCHER' is not one of auto, srun, mpirun" ;;
  esac
  [[ "$XFER_COORDINATOR_PORT" =~ ^[0-9]+$ && "$XFER_COORDINATOR_PORT" -le 65535 ]] ||
    xfer_die "XFER_COORDINATOR_PORT '$XFER_COORDINATOR_PORT' is not a port number (0-65535; 0: a free one)"
  [[ "$XFER_HEALTH_TIMEOUT" =~ ^[1-9][0-9]*$ ]] ||
    xfer_die "XFER_HEALTH_TIMEOUT '$XFER_HEALTH_TIMEOUT' is not a positive number of seconds"
  [[ "$XFER_REQUEUE" == 0 || "$XFER_REQUEUE" == 1 ]] || xfer_die "XFER_REQUEUE '$XFER_REQUEUE' is not 0 or 1"
  [[ -z "$XFER_TOKEN_FILE" || -r "$XFER_TOKEN_FILE" ]] ||
    xfer_die "XFER_TOKEN_FILE '$XFER_TOKEN_FILE' is not a readable file"
  [[ -z "$XFER_TLS_CA" || -r "$XFER_TLS_CA" ]] || xfer_die "XFER_TLS_CA '$XFER_TLS_CA' is not a readable file"
}

# --- the coordinator --------------------------------------------------------

xfer_coordinator_pid=""
xfer_coordinator_address=""
xfer_ctl_flags=()

# xfer_ctl ARGS...: coordctl against this job's coordinator.
xfer_ctl() {
  "$XFER_BIN/coordctl" --coordinator "$xfer_coordinator_address" "${xfer_ctl_flags[@]}" "$@"
}

# Starts the coordinator on this (the batch) host and waits until it serves.
# One node: it listens on loopback. Several: on every interface, with a token
# (XFER_TOKEN_FILE, or one made in the run directory, mode 600).
xfer_start_coordinator() {
  local dir="$XFER_RUN_DIR/coordinator" listen host flags=() d
  mkdir -p "$dir" || xfer_die "cannot create $dir"
  local log="$dir/coordinator.log" port_file="$dir/coordinator.port"
  rm -f "$port_file"
  if [[ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]]; then
    host=$(hostname -f 2>/dev/null || hostname)
    listen="0.0.0.0:$XFER_COORDINATOR_PORT"
    if [[ -z "$XFER_TOKEN_FILE" && " $XFER_COORDINATOR_ARGS " != *" --insecure "* ]]; then
      XFER_TOKEN_FILE="$dir/token"
      if [[ ! -s "$XFER_TOKEN_FILE" ]]; then
        (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$XFER_TOKEN_FILE") ||
          xfer_die "cannot write a token to $XFER_TOKEN_FILE"
      fi
    fi
  else
    host=127.0.0.1
    listen="127.0.0.1:$XFER_COORDINATOR_PORT"
  fi
  for d in $XFER_DATASETS; do flags+=(--dataset "$d"); done
  [[ -n "$XFER_TOKEN_FILE" ]] && flags+=(--token-file "$XFER_TOKEN_FILE")
  local extra=()
  read -r -a extra <<<"$XFER_COORDINATOR_ARGS"
  echo "--- job ${SLURM_JOB_ID:-?} attempt $((${SLURM_RESTART_COUNT:-0} + 1))" >>"$log"
  "$XFER_BIN/coordinator" --listen "$listen" --port-file "$port_file" "${flags[@]}" \
    --checkpoint-dir "$dir/checkpoints" --state-dir "$dir/state" "${extra[@]}" >>"$log" 2>&1 &
  xfer_coordinator_pid=$!

  local deadline=$((SECONDS + XFER_HEALTH_TIMEOUT))
  until [[ -s "$port_file" ]]; do
    kill -0 "$xfer_coordinator_pid" 2>/dev/null || {
      tail -20 "$log" >&2
      xfer_coordinator_pid=""
      xfer_die "the coordinator exited at start (log: $log)"
    }
    ((SECONDS < deadline)) || xfer_die "the coordinator wrote no port within ${XFER_HEALTH_TIMEOUT} s (log: $log)"
    sleep 0.2
  done
  xfer_coordinator_address="$host:$(cat "$port_file")"
  xfer_ctl_flags=(--retry-for 0 --timeout 5)
  [[ -n "$XFER_TOKEN_FILE" ]] && xfer_ctl_flags+=(--token-file "$XFER_TOKEN_FILE")
  [[ -n "$XFER_TLS_CA" ]] && xfer_ctl_flags+=(--tls-ca "$XFER_TLS_CA")
  xfer_wait_serving "$deadline" "$log"
  xfer_log "coordinator pid $xfer_coordinator_pid SERVING at $xfer_coordinator_address (state: $dir, log: $log)"
}

# xfer_wait_serving DEADLINE LOG: until the coordinator serves, seen through
# the address the trainers get. `coordctl health` (grpc.health.v1.Health/Check
# says SERVING) where coordctl has that command; otherwise a Status call: the
# coordinator sets its health status to SERVING before it writes the port
# file waited for above, and answers Status only while serving.
xfer_wait_serving() {
  local deadline=$1 log=$2 probe=(status) commands
  commands=$("$XFER_BIN/coordctl" --help 2>/dev/null || true)
  grep -Eq '^ +health ' <<<"$commands" && probe=(health)
  until xfer_ctl "${probe[@]}" >/dev/null 2>&1; do
    kill -0 "$xfer_coordinator_pid" 2>/dev/null || {
      tail -20 "$log" >&2
      xfer_coordinator_pid=""
      xfer_die "the coordinator exited before serving (log: $log)"
    }
    ((SECONDS < deadline)) ||
      xfer_die "the coordinator at $xfer_coordinator_address is not SERVING after ${XFER_HEALTH_TIMEOUT} s (log: $log)"
    sleep 0.5
  done
}

# The run's state at the coordinator (completed, preempted, running,
# failed, ...); "none" when the coordinator does not know the run or does
# not answer.
xfer_run_state() {
  local json state
  json=$(xfer_ctl --json status "$XFER_RUN_NAME" 2>/dev/null) || { echo none; return 0; }
  state=$(sed -n 's/^ *"state": *"\([a-z_]*\)".*/\1/p' <<<"$json" | head -1)
  echo "${state:-none}"
}

# Stops the coordinator (SIGTERM: it flushes its state and exits) and waits
# up to 30 s, then SIGKILL.
xfer_stop_coordinator() {
  local pid=$xfer_coordinator_pid
  [[ -n "$pid" ]] || return 0
  xfer_coordinator_pid=""
  kill -TERM "$pid" 2>/dev/null || return 0
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    xfer_log "the coordinator (pid $pid) did not stop within 30 s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  rm -f "$XFER_RUN_DIR/coordinator/coordinator.port"
  xfer_log "coordinator stopped (exit status $rc)"
}

# --- the trainers -----------------------------------------------------------

xfer_launcher=""
xfer_launcher_pid=""
xfer_launcher_rc=0

# Picks srun --mpi=$XFER_SRUN_MPI when srun has that plugin, else mpirun.
xfer_pick_launcher() {
  local has_pmix=0 plugins
  plugins=$(srun --mpi=list 2>&1 || true)
  grep -qw -- "$XFER_SRUN_MPI" <<<"$plugins" && has_pmix=1
  case "$XFER_LAUNCHER" in
    srun)
      ((has_pmix)) || xfer_die "XFER_LAUNCHER=srun but srun lacks --mpi=$XFER_SRUN_MPI (srun --mpi=list)"
      xfer_launcher=srun ;;
    mpirun)
      command -v mpirun >/dev/null || xfer_die "XFER_LAUNCHER=mpirun but mpirun is not on PATH"
      xfer_launcher=mpirun ;;
    auto)
      if ((has_pmix)); then
        xfer_launcher=srun
      elif command -v mpirun >/dev/null; then
        xfer_launcher=mpirun
      else
        xfer_die "neither srun --mpi=$XFER_SRUN_MPI nor mpirun is available to start the trainers"
      fi ;;
  esac
}

# xfer_start_trainers TRAIN_ARGS...: one `trainer train` per task, in the
# background (so that signals reach the batch shell's traps at once).
xfer_start_trainers() {
  local tasks=${SLURM_NTASKS:-1} cmd=()
  local args=(--coordinator "$xfer_coordinator_address" --run-name "$XFER_RUN_NAME" --run-dir "$XFER_RUN_DIR")
  [[ -n "$XFER_TOKEN_FILE" ]] && args+=(--token-file "$XFER_TOKEN_FILE")
  [[ -n "$XFER_TLS_CA" ]] && args+=(--tls-ca "$XFER_TLS_CA")
  [[ -n "$XFER_RESUME" && "$XFER_RESUME" != none ]] && args+=(--resume "$XFER_RESUME")
  # One thread per allocated CPU of the task unless the flags say otherwise.
  if [[ -n "${SLURM_CPUS_PER_TASK:-}" && " $* " != *" --threads "* ]]; then
    args+=(--threads "$SLURM_CPUS_PER_TASK")
  fi
  local extra=()
  if [[ "$xfer_launcher" == srun ]]; then
    read -r -a extra <<<"$XFER_SRUN_ARGS"
    # srun no longer takes --cpus-per-task from the allocation (Slurm 22.05).
    [[ -n "${SLURM_CPUS_PER_TASK:-}" ]] && export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
    cmd=(srun --mpi="$XFER_SRUN_MPI" --kill-on-bad-exit=1 "${extra[@]}")
  else
    read -r -a extra <<<"$XFER_MPIRUN_ARGS"
    [[ "$(id -u)" == 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    cmd=(mpirun -np "$tasks" "${extra[@]}")
  fi
  xfer_log "launching $tasks trainers with $xfer_launcher: ${cmd[*]} trainer train ${args[*]} $*"
  "${cmd[@]}" "$XFER_BIN/trainer" train "${args[@]}" "$@" &
  xfer_launcher_pid=$!
}

xfer_signals=0   # trapped signals so far (a wait they interrupt is resumed)
xfer_stop_reason=""

# Waits for the launcher; a wait cut short by a trapped signal is resumed.
xfer_wait_trainers() {
  local seen
  while :; do
    seen=$xfer_signals
    if wait "$xfer_launcher_pid"; then xfer_launcher_rc=0; else xfer_launcher_rc=$?; fi
    [[ "$seen" == "$xfer_signals" ]] && break
  done
  xfer_launcher_pid=""
}

# xfer_on_signal SIG: the trap of USR1 and TERM. Forwards the signal to the
# launcher (srun and mpirun hand it on to every task).
xfer_on_signal() {
  xfer_signals=$((xfer_signals + 1))
  # SIGTERM (scancel, the time limit) outranks an earlier SIGUSR1: no requeue.
  [[ "$xfer_stop_reason" == TERM ]] || xfer_stop_reason=$1
  if [[ -n "$xfer_launcher_pid" ]]; then
    xfer_log "SIG$1: asking the trainers to checkpoint at the next step boundary"
    kill -"$1" "$xfer_launcher_pid" 2>/dev/null || true
  else
    xfer_log "SIG$1 with no trainers running"
  fi
}
