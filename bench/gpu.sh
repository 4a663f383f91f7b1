#!/usr/bin/env bash
# bench/gpu.sh: our training step against PyTorch's on one GPU (issue #7, "CUDA path").
#
# On the device machine (one H200; the session's device tool), from the repository root:
#
#   run(command="bash bench/gpu.sh", timeout_s=540)          # no carry: needs nothing but
#                                                            # the tree and the machine's PyTorch
#   run(command="bash bench/gpu.sh --quick", timeout_s=300)  # a first look, about half the time
#
# The table is printed last (the reply keeps the last 12,000 characters) and written with
# the raw lines and logs to $OUT when it is set: gpu_bench_table.md, gpu_bench_raw.txt,
# gpu_bench_build.log, gpu_bench_stderr.log. Expected on the H200: build 1-2 min (CMake
# configure against the CUDA LibTorch, then 8 translation units at -j$(nproc); a rerun on
# a still-warm machine reuses build-gpu/), parity ~20 s, timing ~2 min (--quick: ~1 min);
# about 4-5 min of device time with the machine's start. Exit status: 0, or 1 when the
# build, the parity check or a run fails (the reason is printed last).
#
# What it does:
#   1. finds a python3 whose torch and torchvision import (and see CUDA, for --device cuda):
#      --python, else python3 on PATH, /opt/torch/.venv/bin/python3, /usr/bin/python3;
#   2. builds bench/gpu (a standalone CMake project: trainer/models/*.cc + gpu_step_bench
#      against that torch's own LibTorch, torch.utils.cmake_prefix_path; no gRPC, MPI,
#      protobuf, spdlog, CLI11) into --build-dir; if CMake cannot configure against that
#      LibTorch, compiles the same files with c++ directly (--builder cmake|direct|auto);
#   3. parity: our model writes its weights, inputs, eval-mode logits and gradients
#      (fp32, TF32 off); torchvision loads the weights and must agree (logits within 1e-3
#      of their scale, each parameter's gradient within 1e-2 of its norm); stops here,
#      exit 1, if not;
#   4. times full and finetune at 32 px, batch 256, and finetune at 224 px, batch 64, in
#      fp32 and bf16 (autocast), channels-last, inputs from pinned host memory copied
#      without blocking each step; ours and PyTorch's alternate (ours, PyTorch, ours,
#      PyTorch), each process running every config; each cell is the median over rounds
#      of the median timed window; Adam ms is the optimizer alone (PyTorch's default
#      Adam is foreach on CUDA, ours a per-tensor loop).
#
#   bench/gpu.sh [--quick] [--device cuda|cpu] [--python PATH] [--build-dir DIR]
#                [--builder auto|cmake|direct] [--rounds N] [--cudnn-benchmark]
#                [--peer-compile] [--jobs N]
#
# --device cpu runs the same on the CPU (Debian's LibTorch 1.13 and /usr/bin/python3 here)
# with smaller batches, to test the script; its figures say nothing about a GPU.
# --peer-compile adds torch.compile to PyTorch's side (compilation inside the warm-up;
# several minutes on a GPU: not for the 15-minute budget). Not a test: figures depend on
# the machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)

device=cuda
quick=0
python=""
build_dir="$src/build-gpu"
builder=auto
rounds=""
cudnn_benchmark=0
peer_compile=0
jobs=$(nproc)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --device) device=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --builder) builder=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --cudnn-benchmark) cudnn_benchmark=1; shift ;;
    --peer-compile) peer_compile=1; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$device" == cuda || "$device" == cpu ]] || { echo "gpu.sh: --device '$device': expected cuda or cpu" >&2; exit 2; }
[[ "$builder" =~ ^(auto|cmake|direct)$ ]] || { echo "gpu.sh: --builder '$builder': expected auto, cmake or direct" >&2; exit 2; }
mkdir -p "$build_dir"
build_dir=$(cd "$build_dir" && pwd)
tmp=$(mktemp -d /tmp/xfer_gpu_bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
log() { echo "gpu.sh: $*" >&2; }
die() { echo "gpu.sh: $*" >&2; exit 1; }
start_s=$(date +%s)
elapsed() { echo "$(($(date +%s) - start_s)) s"; }

# ---- 1. python with torch (+ CUDA)
want_cuda=$([[ $device == cuda ]] && echo 1 || echo 0)
probe_python() {
  "$1" - "$want_cuda" >/dev/null 2>&1 <<'PY'
import sys
import torch, torchvision
sys.exit(0 if sys.argv[1] == "0" or torch.cuda.is_available() else 3)
PY
}
if [[ -n "$python" ]]; then
  probe_python "$python" || die "--python $python: its torch/torchvision do not import$([[ $want_cuda == 1 ]] && echo ', or its torch sees no CUDA device')"
else
  for candidate in "$(command -v python3 || true)" /opt/torch/.venv/bin/python3 /usr/bin/python3; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    if probe_python "$candidate"; then python=$candidate; break; fi
  done
  [[ -n "$python" ]] || die "no python3 with torch and torchvision$([[ $want_cuda == 1 ]] && echo ' that sees a CUDA device (use --device cpu without a GPU)') among python3 on PATH, /opt/torch/.venv/bin/python3, /usr/bin/python3; pass --python"
fi
py_bin_dir=$(dirname "$python")
export PATH="$PATH:$py_bin_dir"  # the venv's cmake and ninja, where PATH lacks them
torch_version=$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null)
log "python $python, torch $torch_version, device $device ($(elapsed))"

# ---- 2. build
build_log="$tmp/build.log"
: >"$build_log"
bin="$build_dir/gpu_step_bench"
if [[ $device == cuda ]] && command -v nvidia-smi >/dev/null; then
  # Caffe2's CUDA CMake code asks for an architecture list (it compiles no CUDA for us).
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 || true)
  [[ -n "${TORCH_CUDA_ARCH_LIST:-}" || -z "$cap" ]] || export TORCH_CUDA_ARCH_LIST="$cap"
fi

# Returns 0 built, 2 could not configure (no cmake, or the TorchConfig failed), else a
# compile or link error (which the direct build would only repeat).
build_cmake() {
  command -v cmake >/dev/null || { echo "no cmake on PATH" >>"$build_log"; return 2; }
  local prefix generator=()
  prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
  local args=(-S "$here/gpu" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release)
  # Debian's python names a folder that does not exist; the system TorchConfig is then
  # found on CMake's default path.
  [[ -n "$prefix" && -d "$prefix" ]] && args+=("-DCMAKE_PREFIX_PATH=$prefix")
  if [[ ! -f "$build_dir/CMakeCache.txt" ]] && command -v ninja >/dev/null; then generator=(-G Ninja); fi
  if [[ $device == cuda ]]; then
    # A CUDA LibTorch's TorchConfig runs FindCUDA and enable_language(CUDA): it needs
    # nvcc (and the toolkit it belongs to), though we compile no CUDA code.
    local nvcc
    nvcc=$(command -v nvcc || true)
    [[ -n "$nvcc" || ! -x /usr/local/cuda/bin/nvcc ]] || nvcc=/usr/local/cuda/bin/nvcc
    if [[ -n "$nvcc" ]]; then
      local toolkit
      toolkit=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
      PATH="$(dirname "$nvcc"):$PATH"
      export PATH
      args+=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCUDA_TOOLKIT_ROOT_DIR="$toolkit" -DCUDAToolkit_ROOT="$toolkit")
    else
      echo "no nvcc on PATH or in /usr/local/cuda/bin: a CUDA TorchConfig will likely fail" >>"$build_log"
    fi
  fi
  echo "+ cmake ${generator[*]} ${args[*]}" >>"$build_log"
  timeout -k 10 240 cmake "${generator[@]}" "${args[@]}" >>"$build_log" 2>&1 || return 2
  echo "+ cmake --build $build_dir --target gpu_step_bench -j $jobs" >>"$build_log"
  timeout -k 10 480 cmake --build "$build_dir" --target gpu_step_bench -j "$jobs" >>"$build_log" 2>&1
}

# The same build without CMake: include and library folders from torch itself.
build_direct() {
  local info
  info=$("$python" - 2>>"$build_log" <<'PY'
import os, torch
root = os.path.dirname(torch.__file__)
major, minor = (int(x) for x in torch.__version__.split(".")[:2])
print(os.path.join(root, "include"), os.path.join(root, "include", "torch", "csrc", "api", "include"))
print(os.path.join(root, "lib"))
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(20 if (major, minor) >= (2, 12) else 17)
PY
) || return 1
  local includes lib abi std
  { read -r includes; read -r lib; read -r abi; read -r std; } <<<"$info"
  local out="$build_dir/direct" flags=() objects=() pids=() sources=() s o failed=0
  mkdir -p "$out"
  flags=("-std=c++$std" -O2 -DNDEBUG -D_GLIBCXX_USE_CXX11_ABI="$abi" -Wall -Wextra -Wpedantic
    -Wshadow=local -Wnon-virtual-dtor -Woverloaded-virtual -I"$here/gpu/shim" -I"$src")
  for dir in $includes; do flags+=(-isystem "$dir"); done
  for s in "$src"/trainer/models/*.cc "$here"/gpu/gpu_step_bench.cc "$here"/gpu/bench_options.cc; do
    [[ "$s" =~ _(test|main)\.cc$ ]] && continue
    sources+=("$s")
  done
  echo "+ c++ ${flags[*]} (${#sources[@]} files, $jobs at a time)" >>"$build_log"
  for s in "${sources[@]}"; do
    o="$out/$(basename "${s%.cc}").o"
    objects+=("$o")
    timeout -k 10 480 c++ "${flags[@]}" -c "$s" -o "$o" >>"$build_log" 2>&1 &
    pids+=($!)
    if [[ ${#pids[@]} -ge $jobs ]]; then wait "${pids[0]}" || failed=1; pids=("${pids[@]:1}"); fi
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [[ $failed == 0 ]] || return 1
  local libs=()
  # libtorch_cuda has no symbol we call: --no-as-needed keeps it, or LibTorch sees no GPU.
  for l in torch_cuda c10_cuda; do [[ -e "$lib/lib$l.so" ]] && libs+=("-l$l"); done
  echo "+ c++ -o $bin ... -L$lib -Wl,--no-as-needed ${libs[*]} -ltorch -ltorch_cpu -lc10" >>"$build_log"
  c++ -o "$bin" "${objects[@]}" -L"$lib" -Wl,-rpath,"$lib" -Wl,--no-as-needed "${libs[@]}" \
    -ltorch -ltorch_cpu -lc10 -Wl,--as-needed -Wl,--allow-shlib-undefined -pthread >>"$build_log" 2>&1
}

built=""
cmake_status=2
if [[ $builder != direct ]]; then
  build_cmake && cmake_status=0 || cmake_status=$?
  if [[ $cmake_status == 0 ]]; then built=cmake; else
    log "CMake $([[ $cmake_status == 2 ]] && echo configure || echo build) failed (tail of the log below)"
    tail -25 "$build_log" >&2
  fi
fi
if [[ -z "$built" && $builder != cmake && $cmake_status == 2 ]]; then
  log "building with c++ directly"
  if build_direct; then built=direct; else tail -40 "$build_log" >&2; fi
fi
if [[ -n "${OUT:-}" ]]; then cp "$build_log" "$OUT/gpu_bench_build.log" 2>/dev/null || true; fi
[[ -n "$built" && -x "$bin" ]] || die "could not build gpu_step_bench (log: ${OUT:+$OUT/gpu_bench_build.log}; above)"
log "built $bin ($built, $(elapsed))"

# ---- 3. parity
stderr_log="$tmp/stderr.log"
raw="$tmp/raw.txt"
: >"$raw"
peer=("$python" "$here/gpu/torch_step_bench.py")
common=(--device "$device" --memory-format channels_last --num-classes 100)
threads=()
[[ $device == cpu ]] && threads=(--threads "$(nproc)")
save_logs() {
  [[ -n "${OUT:-}" ]] || return 0
  cp "$raw" "$OUT/gpu_bench_raw.txt" 2>/dev/null || true
  cp "$stderr_log" "$OUT/gpu_bench_stderr.log" 2>/dev/null || true
}
# run_logged LIMIT_S COMMAND...: stdout into $raw and onto the terminal, stderr into the log.
run_logged() {
  local limit=$1
  shift
  echo "+ $*" >>"$stderr_log"
  timeout -k 10 "$limit" "$@" 2>>"$stderr_log" | tee -a "$raw"
  return "${PIPESTATUS[0]}"
}
if ! run_logged 180 "$bin" "${common[@]}" "${threads[@]}" --parity-dir "$tmp/parity"; then
  save_logs
  tail -20 "$stderr_log" >&2
  die "parity: gpu_step_bench --parity-dir failed (above)"
fi
if ! run_logged 180 "${peer[@]}" "${common[@]}" "${threads[@]}" --parity "$tmp/parity"; then
  save_logs
  tail -20 "$stderr_log" >&2
  die "PARITY FAILED: our EfficientNet-B0 and torchvision's disagree on $device with the same weights and input (lines above); no timing"
fi
log "parity ok ($(elapsed))"

# ---- 4. timing
if [[ $device == cuda ]]; then
  configs=full:32:256,finetune:32:256,finetune:224:64
  if [[ $quick == 1 ]]; then steps=(--warmup 5 --windows 3 --steps 5 --optimizer-steps 10); else
    steps=(--warmup 15 --windows 5 --steps 10 --optimizer-steps 20); fi
else
  if [[ $quick == 1 ]]; then
    configs=full:32:16,finetune:32:16,finetune:224:4
    steps=(--warmup 1 --windows 2 --steps 2 --optimizer-steps 2)
  else
    configs=full:32:32,finetune:32:32,finetune:224:8
    steps=(--warmup 2 --windows 3 --steps 3 --optimizer-steps 5)
  fi
fi
[[ -n "$rounds" ]] || rounds=$([[ $quick == 1 ]] && echo 1 || echo 2)
flags=("${common[@]}" "${threads[@]}" --configs "$configs" --precisions "fp32,bf16" "${steps[@]}")
[[ $cudnn_benchmark == 1 ]] && flags+=(--cudnn-benchmark)
peer_flags=()
[[ $peer_compile == 1 ]] && peer_flags+=(--compile)
for round in $(seq "$rounds"); do
  log "round $round/$rounds: ours ($(elapsed))"
  run_logged 300 "$bin" "${flags[@]}" || { save_logs; tail -20 "$stderr_log" >&2; die "gpu_step_bench failed in round $round (above)"; }
  log "round $round/$rounds: PyTorch ($(elapsed))"
  run_logged 300 "${peer[@]}" "${flags[@]}" "${peer_flags[@]}" || { save_logs; tail -20 "$stderr_log" >&2; die "torch_step_bench.py failed in round $round (above)"; }
done

# ---- the table
gpu="none ($device run)"
if command -v nvidia-smi >/dev/null; then
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1 || echo unknown)
  echo "clocks after the runs: $(nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>/dev/null | head -1)" >>"$raw"
fi
revision=$(cd "$src" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ $revision != unknown && -n "$(cd "$src" && git status --porcelain 2>/dev/null | head -1)" ]] && revision="$revision+changes"
table="$tmp/table.md"
"$python" - "$raw" "$gpu" "$revision" "$(nproc)" "$rounds" "$built" >"$table" <<'PY'
import statistics, sys
raw, gpu, revision, cores, rounds, built = sys.argv[1:]
info, results, parity = {}, {}, []
for line in open(raw):
    fields = line.split()
    if not fields:
        continue
    if fields[0] in ("info", "result"):
        kv = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        if fields[0] == "info":
            info[kv["impl"]] = kv
        else:
            key = (kv["phase"], int(kv["size"]), int(kv["batch"]), kv["precision"])
            results.setdefault(key, {}).setdefault(kv["impl"], []).append(kv)
    elif fields[0] == "parity":
        parity.append(line.strip())
ours, theirs = info.get("ours", {}), info.get("pytorch", {})
def rate(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"
def med(rows, name):
    return statistics.median(float(r[name]) for r in rows) if rows else float("nan")
print(f"GPU: {gpu}; {cores} host cores; xfer {revision}, built with {built}")
print(f"ours: LibTorch {ours.get('libtorch', '?')}; PyTorch: torch {theirs.get('torch', '?')}, "
      f"torchvision {theirs.get('torchvision', '?')}, CUDA {theirs.get('cuda', '?')}, "
      f"cuDNN {theirs.get('cudnn', '?')}; device {theirs.get('device', '?')}; "
      f"TF32 convolutions {theirs.get('tf32_cudnn', '?')}, cudnn.benchmark "
      f"{theirs.get('cudnn_benchmark', '?')}, torch.compile {theirs.get('compile', '?')}")
print("parity (fp32, TF32 off): " + "; ".join(p.replace("parity ", "") for p in parity))
any_row = next(iter(results.values()), {})
sample = (any_row.get("ours") or any_row.get("pytorch") or [{}])[0]
print(f"EfficientNet-B0, 100 classes, Adam, channels-last, pinned non-blocking inputs; median of "
      f"{rounds} round(s) x (median of {sample.get('windows', '?')} steps windows)")
print()
print("| phase | px | batch | precision | ours img/s | PyTorch img/s | ours / PyTorch "
      "| ours ms/step | PyTorch ms/step | ours Adam ms | PyTorch Adam ms |")
print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for (phase, size, batch, precision), by_impl in results.items():
    o, p = by_impl.get("ours", []), by_impl.get("pytorch", [])
    oi, pi = med(o, "img_per_s"), med(p, "img_per_s")
    print(f"| {phase} | {size} | {batch} | {precision} | {rate(oi)} | {rate(pi)} | {oi / pi:.2f} "
          f"| {med(o, 'step_ms'):.2f} | {med(p, 'step_ms'):.2f} | {med(o, 'adam_ms'):.2f} "
          f"| {med(p, 'adam_ms'):.2f} |")
PY
echo
cat "$table"
if [[ -n "${OUT:-}" ]]; then
  cp "$table" "$OUT/gpu_bench_table.md"
  save_logs
fi
log "done ($(elapsed))"
