#!/usr/bin/env python3
"""PyTorch's side of bench/gpu/gpu_step_bench.cc (run by bench/gpu.sh; not a test).

The same training step with torchvision's efficientnet_b0 (100 classes), timed
the same way, printing the same 'result' lines:

  step    the batch is copied from pinned host memory to the device without
          blocking and put in the memory format; gradients set to None;
          forward and cross-entropy under bf16 autocast when asked (backward
          and Adam outside it); backward; Adam (eps 1e-7, PyTorch's default
          implementation: foreach on CUDA).
  phases  head: features frozen and in eval mode, run under no_grad (ours
          runs them under InferenceMode); finetune: everything trains but
          BatchNorm, whose parameters are frozen and which stays in eval
          mode; full: everything trains.
  timing  --warmup untimed steps, then --windows windows of --steps steps,
          synchronised at both ends; img/s from the median window; then
          --optimizer-steps Adam steps alone.

--parity DIR loads what gpu_step_bench --parity-dir DIR wrote (our weights,
inputs, eval-mode logits and gradients), computes the same with torchvision on
--device in fp32 with TF32 off, prints the differences and exits 1 when one
is over its tolerance.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision


def phase_lr(phase):
    return 3e-6 if phase == "finetune" else 1e-3


def parse_configs(text):
    configs = []
    for item in text.split(","):
        fields = item.split(":")
        if len(fields) != 3 or fields[0] not in ("head", "finetune", "full"):
            raise SystemExit(f"torch_step_bench: --configs entry '{item}': expected "
                             "PHASE:SIZE:BATCH with PHASE head, finetune or full")
        configs.append((fields[0], int(fields[1]), int(fields[2])))
    return configs


def load(path):
    # Files gpu_step_bench wrote (trusted): torch >= 2.6 defaults to
    # weights_only=True, whose allow-list need not cover LibTorch's pickles.
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:  # torch < 1.13 has no weights_only
        return torch.load(path, map_location="cpu")


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
        self.cuda = args.device == "cuda"
        self.memory_format = (torch.channels_last if args.memory_format == "channels_last"
                              else torch.contiguous_format)

    def synchronize(self):
        if self.cuda:
            torch.cuda.synchronize()

    def make_model(self, phase):
        torch.manual_seed(self.args.seed)
        model = torchvision.models.efficientnet_b0(num_classes=self.args.num_classes)
        model = model.to(self.device, memory_format=self.memory_format)
        batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        # As ours: BatchNorm statistics measured on one batch (see gpu_step_bench.cc).
        with torch.no_grad():
            for bn in batchnorms:
                bn.momentum = 1.0
            model.train()
            model(torch.randn(16, 3, 64, 64).to(self.device).contiguous(
                memory_format=self.memory_format))
            for bn in batchnorms:
                bn.momentum = 0.1
        if phase == "head":
            for p in model.features.parameters():
                p.requires_grad_(False)
        elif phase == "finetune":
            for bn in batchnorms:
                for p in bn.parameters():
                    p.requires_grad_(False)
        model.train()
        if phase == "head":
            model.features.eval()
        elif phase == "finetune":
            for bn in batchnorms:
                bn.eval()
        if self.args.compile:
            model = torch.compile(model)
        return model

    def host_batch(self, values):
        return values.pin_memory() if self.cuda else values.contiguous()

    def time_config(self, phase, size, batch, precision):
        args = self.args
        model = self.make_model(phase)
        # torch.compile wraps the module: reach the real one for its parts.
        net = getattr(model, "_orig_mod", model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        adam = torch.optim.Adam(trainable, lr=phase_lr(phase), eps=1e-7)
        torch.manual_seed(args.seed + 1)
        images = self.host_batch(torch.randn(batch, 3, size, size))
        labels = self.host_batch(torch.arange(batch) % args.num_classes)
        bf16 = precision == "bf16"

        def forward(x):
            if phase == "head":
                with torch.no_grad():
                    features = torch.flatten(net.avgpool(net.features(x)), 1)
                return net.classifier(features)
            return model(x)

        def step():
            x = images.to(self.device, non_blocking=True).contiguous(
                memory_format=self.memory_format)
            y = labels.to(self.device, non_blocking=True)
            model.zero_grad(set_to_none=True)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                enabled=bf16):
                loss = F.cross_entropy(forward(x), y)
            loss.backward()
            adam.step()

        for _ in range(args.warmup):
            step()
        self.synchronize()
        windows = []
        for _ in range(args.windows):
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            self.synchronize()
            windows.append(time.perf_counter() - start)
        adam_ms = 0.0
        if args.optimizer_steps > 0:
            start = time.perf_counter()
            for _ in range(args.optimizer_steps):
                adam.step()
            self.synchronize()
            adam_ms = 1e3 * (time.perf_counter() - start) / args.optimizer_steps
        window = statistics.median(windows)
        print(f"result impl=pytorch phase={phase} size={size} batch={batch} precision={precision} "
              f"memory={args.memory_format} device={args.device} "
              f"img_per_s={batch * args.steps / window:.1f} step_ms={1e3 * window / args.steps:.3f} "
              f"best_step_ms={1e3 * min(windows) / args.steps:.3f} adam_ms={adam_ms:.3f} "
              f"trainable={len(trainable)} windows={args.windows}x{args.steps}", flush=True)

    def parity(self, folder):
        args = self.args
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        ours = load(os.path.join(folder, "ours.pt"))
        model = torchvision.models.efficientnet_b0(num_classes=args.num_classes)
        model.load_state_dict(load(os.path.join(folder, "weights.pt")))
        model = model.to(self.device, memory_format=self.memory_format).eval()
        failures = []
        with torch.no_grad():
            for size in (32, 224):
                x = ours[f"input_{size}"].to(self.device).contiguous(
                    memory_format=self.memory_format)
                theirs = model(x).cpu()
                mine = ours[f"logits_{size}"]
                diff = (mine - theirs).abs().max().item()
                scale = theirs.abs().max().item()
                rel = diff / max(scale, 1e-30)
                ok = rel < args.logit_tolerance and torch.isfinite(mine).all().item()
                print(f"parity logits size={size} max_abs_diff={diff:.3e} logit_scale={scale:.3e} "
                      f"relative={rel:.3e} tolerance={args.logit_tolerance:g} "
                      f"{'ok' if ok else 'FAILED'}", flush=True)
                if not ok:
                    failures.append(f"logits at {size} px differ by {rel:.3e} of their scale "
                                    f"(expected < {args.logit_tolerance:g})")
        x = ours["input_224"].to(self.device).contiguous(memory_format=self.memory_format)
        loss = F.cross_entropy(model(x), ours["labels"].to(self.device))
        loss.backward()
        loss_rel = abs(loss.item() - ours["loss"].item()) / max(abs(loss.item()), 1e-30)
        worst_name, worst = "", 0.0
        missing = []
        for name, p in model.named_parameters():
            mine = ours.get(f"grad.{name}")
            if mine is None:
                missing.append(name)
                continue
            theirs = p.grad.detach().float().cpu()
            # Relative to the tensor's own gradient norm; NaN counts as worst.
            rel = ((mine - theirs).norm() / max(theirs.norm().item(), 1e-30)).item()
            rel = float("inf") if rel != rel else rel
            if rel > worst or not worst_name:
                worst_name, worst = name, rel
        ok = (not missing and worst < args.grad_tolerance and loss_rel < args.logit_tolerance)
        print(f"parity gradients tensors={len(list(model.parameters()))} loss_relative={loss_rel:.3e} "
              f"worst_relative={worst:.3e} worst_tensor={worst_name} "
              f"tolerance={args.grad_tolerance:g} {'ok' if ok else 'FAILED'}", flush=True)
        if missing:
            failures.append(f"no gradient from ours for {', '.join(missing[:5])}")
        if worst >= args.grad_tolerance:
            failures.append(f"gradient of {worst_name} differs by {worst:.3e} of its norm "
                            f"(expected < {args.grad_tolerance:g})")
        if loss_rel >= args.logit_tolerance:
            failures.append(f"eval-mode loss {ours['loss'].item():.6f} (ours) vs "
                            f"{loss.item():.6f} (torchvision)")
        for failure in failures:
            print(f"torch_step_bench --parity: {failure}", file=sys.stderr)
        return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--configs", default="finetune:224:64", type=parse_configs)
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--memory-format", choices=["channels_last", "nchw"],
                        default="channels_last")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--optimizer-steps", type=int, default=10)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (compilation happens in the warm-up)")
    parser.add_argument("--parity", metavar="DIR", default="")
    parser.add_argument("--logit-tolerance", type=float, default=1e-3,
                        help="max |ours - torchvision| / max |torchvision| of the logits")
    parser.add_argument("--grad-tolerance", type=float, default=1e-2,
                        help="max over tensors of |g_ours - g_torchvision| / |g_torchvision|")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    for p in precisions:
        if p not in ("fp32", "bf16"):
            parser.error(f"--precisions entry '{p}': expected fp32 or bf16")
    if min(args.windows, args.steps) < 1 or min(args.warmup, args.optimizer_steps) < 0:
        parser.error("--windows and --steps must be >= 1, --warmup and --optimizer-steps >= 0")

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"torch_step_bench: --device cuda, but torch {torch.__version__} sees no CUDA "
              "device; use --device cpu", file=sys.stderr)
        return 1
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    cudnn = torch.backends.cudnn.version() if args.device == "cuda" else 0
    print(f"info impl=pytorch torch={torch.__version__} torchvision={torchvision.__version__} "
          f"cuda={torch.version.cuda} cudnn={cudnn} device={args.device} "
          f"threads={torch.get_num_threads()} tf32_cudnn={int(torch.backends.cudnn.allow_tf32)} "
          f"cudnn_benchmark={int(args.cudnn_benchmark)} compile={int(args.compile)}", flush=True)
    bench = Bench(args)
    if args.parity:
        return bench.parity(args.parity)
    for precision in precisions:
        for phase, size, batch in args.configs:
            bench.time_config(phase, size, batch, precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
