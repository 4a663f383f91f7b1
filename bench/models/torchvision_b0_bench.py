#!/usr/bin/python3
"""torchvision's side of bench/models/model_bench.cc (run by it; not a test).

Loads the state dict the C++ benchmark wrote (so both sides run the same
weights) and the same input batches, checks that eval-mode logits agree,
runs every pass once, then times forward (eval, no_grad) and forward+backward
(train mode, cross entropy) exactly as the C++ side does. Prints one line per figure:
  check SIZE REL_ERROR
  time MODE SIZE BATCH SECONDS_PER_ITERATION...
"""
import argparse
import sys
import time

import torch
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
    parser.add_argument("--profile", type=int, default=0,
                        help="then N forward+backward passes at the first size under the profiler")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = torchvision.models.efficientnet_b0(num_classes=args.num_classes)
    model.load_state_dict(torch.load(args.weights))
    inputs = torch.load(args.inputs)
    expected = torch.load(args.inputs.replace(".pt", "_logits.pt"))
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)

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
        loss = torch.nn.functional.cross_entropy(model(inputs[size]), labels[size])
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
        # Self CPU time per operator summed over the passes: "op NAME MICROSECONDS".
        size = next(iter(inputs))
        with torch.autograd.profiler.profile() as prof:
            for _ in range(args.profile):
                forward_backward(size)
        for event in prof.key_averages():
            print(f"op {event.key} {event.self_cpu_time_total:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
