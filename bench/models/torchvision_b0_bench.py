#!/usr/bin/python3
"""torchvision's side of bench/models/model_bench.cc (run by it; not a test).

Loads the state dict the C++ benchmark wrote (so both sides run the same
weights) and the same input batches, checks that eval-mode logits agree,
runs every pass once, then times forward (eval, no_grad) and forward+backward
(train mode, cross entropy) exactly as the C++ side does, in the module modes
of --phase (full: BatchNorm trains; finetune: BatchNorm modules eval() and
their parameters requires_grad_(False); head: features eval() under
inference_mode, then the classifier). Prints one line per figure:
  check SIZE REL_ERROR
  time MODE SIZE BATCH SECONDS_PER_ITERATION...
"""
import argparse
import sys
import time

import torch
import torch.autograd.profiler_legacy
import torchvision


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--inputs", required=True, help="torch.save'd {\"SIZE\": batch}")
    parser.add_argument("--num-classes", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--phase", choices=("full", "finetune", "head"), default="full")
    parser.add_argument("--profile", type=int, default=0,
                        help="then N forward+backward passes at the first size under the profiler")
    parser.add_argument("--profile-shapes", action="store_true",
                        help="a profile row per operator and input shapes: NAME@[N,C,H,W],[...]")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = torchvision.models.efficientnet_b0(num_classes=args.num_classes)
    model.load_state_dict(torch.load(args.weights))
    inputs = torch.load(args.inputs)
    expected = torch.load(args.inputs.replace(".pt", "_logits.pt"))
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if args.phase == "finetune":
        for bn in batchnorms:
            for p in bn.parameters():
                p.requires_grad_(False)
    elif args.phase == "head":
        for p in model.features.parameters():
            p.requires_grad_(False)

    for size, batch in inputs.items():
        model.eval()
        with torch.no_grad():
            logits = model(batch[:2])
        error = ((logits - expected[size]).abs().max() / expected[size].abs().max()).item()
        print(f"check {size} {error}", flush=True)

    labels = {}
    for size, batch in inputs.items():
        labels[size] = torch.arange(batch.shape[0]) % args.num_classes
        inputs[size] = batch.contiguous(memory_format=memory_format)

    def forward(size):
        model.eval()
        with torch.no_grad():
            model(inputs[size])

    def forward_backward(size):
        model.train()
        model.zero_grad(set_to_none=True)
        if args.phase == "head":
            model.features.eval()
            with torch.inference_mode():
                pooled = model.avgpool(model.features(inputs[size])).flatten(1)
            logits = model.classifier(pooled.clone())
        else:
            if args.phase == "finetune":
                for bn in batchnorms:
                    bn.eval()
            logits = model(inputs[size])
        loss = torch.nn.functional.cross_entropy(logits, labels[size])
        loss.backward()

    # Every pass once before anything is timed: the first passes at a new
    # size pay for page faults and allocator growth (2x at 224 px here) that
    # a long-running job never sees again. The C++ side does the same.
    for size in inputs:
        forward(size)
        forward_backward(size)

    for size, batch in inputs.items():
        for mode, fn in (("fwd", forward), ("fwdbwd", forward_backward)):
            for _ in range(args.warmup):
                fn(size)
            times = []
            for _ in range(args.iterations):
                start = time.perf_counter()
                fn(size)
                times.append(time.perf_counter() - start)
            print(f"time {mode} {size} {batch.shape[0]} " + " ".join(f"{t:.6f}" for t in times),
                  flush=True)

    if args.profile:
        # Self CPU time per operator summed over the passes, and its calls:
        # "op NAME MICROSECONDS CALLS".
        size = next(iter(inputs))
        # The legacy profiler, the one the C++ side runs (enableProfilerLegacy):
        # torch.autograd.profiler.profile records through Kineto, whose
        # per-operator overhead and self times differ, so rows of the two
        # profilers do not compare.
        with torch.autograd.profiler_legacy.profile(record_shapes=args.profile_shapes) as prof:
            for _ in range(args.profile):
                forward_backward(size)
        for event in prof.key_averages(group_by_input_shape=args.profile_shapes):
            key = event.key
            if args.profile_shapes:
                key += "@" + ",".join("[" + ",".join(map(str, s)) + "]"
                                      for s in event.input_shapes)
            print(f"op {key} {event.self_cpu_time_total:.1f} {event.count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
