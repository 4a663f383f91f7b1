#!/usr/bin/env bash
# Installs every Debian 12 package this project needs to build, test and
# benchmark. Idempotent: packages already installed are skipped, and when all
# are present nothing is fetched at all.
#
#   deploy/install-deps.sh            # install what is missing
#   deploy/install-deps.sh --check    # only report what is missing (exit 1 if any)
#   deploy/install-deps.sh --list     # print the package list
set -euo pipefail

# One package per line, with why we need it.
readonly PACKAGES=(
  build-essential          # g++ 12, make
  cmake                    # build system (>= 3.22)
  ninja-build              # faster incremental builds than make
  pkg-config
  git
  libtorch-dev             # LibTorch 1.13 (CPU): models, autograd, optimisers
  libopenblas0-pthread     # fast BLAS behind LibTorch
  libopenmpi-dev           # MPI: ranks, CPU all-reduce
  openmpi-bin              # mpirun
  libgrpc++-dev            # coordinator service and clients
  protobuf-compiler-grpc   # grpc_cpp_plugin
  libprotobuf-dev
  protobuf-compiler        # protoc
  libspdlog-dev            # logging
  libgtest-dev             # unit tests
  libgmock-dev
  libcli11-dev             # flags and config files
  nlohmann-json3-dev       # JSON manifests and reports
  libssl-dev               # SHA-256, TLS
  openssl                  # test certificates for the TLS tests
  libstb-dev               # image decoding for predict
  python3-torch            # numerical reference in tests, PyTorch DDP peer in benchmarks
  python3-torchvision
  python3-numpy
  python3-sklearn          # scikit-learn: the reference for the report's macro averages in tests
  curl                     # tools/fetch-cifar100.sh
  chromium                 # renders report.html headless in its test
  slurmctld                # a real single-node Slurm for the sbatch tests
  slurmd
  slurm-client             # sbatch, srun, squeue, scontrol, sacct
  munge                    # Slurm's authentication
  ca-certificates
)

die() {
  echo "install-deps: error: $*" >&2
  exit 1
}

missing_packages() {
  local pkg status
  for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
      echo "$pkg"
    fi
  done
}

main() {
  case "${1:-}" in
    --list)
      printf '%s\n' "${PACKAGES[@]}"
      return 0
      ;;
    --check | "") ;;
    -h | --help)
      sed -n '2,9p' "$0"
      return 0
      ;;
    *) die "unknown argument '$1' (expected --check, --list or nothing)" ;;
  esac

  command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: this script needs Debian 12 (or a derivative) with apt"

  local missing
  mapfile -t missing < <(missing_packages)
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#PACKAGES[@]} packages are already installed"
    return 0
  fi
  echo "install-deps: missing ${#missing[@]} package(s): ${missing[*]}"
  if [[ "${1:-}" == "--check" ]]; then
    return 1
  fi

  command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found; install these packages by hand: ${missing[*]}"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "not root and no password-less sudo; run as root or install by hand: ${missing[*]}"
    fi
  fi

  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update ||
    die "apt-get update failed (is the Debian mirror reachable?)"
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" ||
    die "apt-get install failed for: ${missing[*]}"

  mapfile -t missing < <(missing_packages)
  [[ ${#missing[@]} -eq 0 ]] || die "still missing after install: ${missing[*]}"
  echo "install-deps: installed; all ${#PACKAGES[@]} packages present"
}

main "$@"
