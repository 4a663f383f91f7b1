#!/usr/bin/env python3
"""Compares what tfevents_reader.py read from a run's event files with the
run's history as `coordctl metrics RUN --json` prints it.

  tensorboard_compare.py HISTORY_JSON READER_JSON WORLD_SIZE

Expected, epoch by epoch of the history (the step rule of
docs/monitoring.md: the first phase keeps its epoch numbers, each new phase
starts one past the highest step so far):
  <split>/loss, /top1, /top3 at the epoch's step, equal to the history's
  values rounded to float32; for train also learning_rate,
  images_per_second, phase (the phase's ordinal), and rank_0 ..
  rank_{W-1}/images_per_second, whose sum is images_per_second.
Nothing else may be there and no (tag, step) twice. Exits 1 listing every
difference.
"""
import json
import math
import struct
import sys


def f32(value):
    return struct.unpack("<f", struct.pack("<f", value))[0]


def main(argv):
    history = json.load(open(argv[1]))
    read = json.load(open(argv[2]))
    world_size = int(argv[3])
    problems = []

    points = {}
    for s in read["scalars"]:
        key = (s["tag"], s["step"])
        if key in points:
            problems.append("%s at step %d is written twice" % key)
        points[key] = s["value"]

    phases = []  # [name, offset] in order of first appearance
    max_step = None
    expected = {}
    rank_sums = {}
    for e in history["epochs"]:
        names = [p[0] for p in phases]
        if e["phase"] in names:
            offset = phases[names.index(e["phase"])][1]
        else:
            offset = 0 if max_step is None else max_step + 1 - e["epoch"]
            phases.append([e["phase"], offset])
        step = offset + e["epoch"]
        max_step = step if max_step is None else max(max_step, step)
        ordinal = [p[0] for p in phases].index(e["phase"])
        split = e["split"]
        for name in ("loss", "top1", "top3"):
            if e[name] is not None:
                expected[("%s/%s" % (split, name), step)] = f32(e[name])
        if split == "train":
            expected[("learning_rate", step)] = f32(e["learning_rate"])
            expected[("images_per_second", step)] = f32(e["images_per_second"])
            expected[("phase", step)] = float(ordinal)
            rank_sums[step] = e["images_per_second"]

    for key, want in sorted(expected.items()):
        if key not in points:
            problems.append("missing: %s at step %d (history: %r)" % (key[0], key[1], want))
        elif points[key] != want:
            problems.append("%s at step %d: file has %r, history %r"
                            % (key[0], key[1], points[key], want))
    for step, total in sorted(rank_sums.items()):
        ranks = [points.get(("rank_%d/images_per_second" % r, step)) for r in range(world_size)]
        if any(v is None for v in ranks):
            problems.append("step %d: rank figures missing: %r" % (step, ranks))
        elif not math.isclose(sum(ranks), total, rel_tol=1e-6):
            problems.append("step %d: rank images/s sum to %r, history total %r"
                            % (step, sum(ranks), total))
        for r in range(world_size):
            expected[("rank_%d/images_per_second" % r, step)] = None
    for key in sorted(set(points) - set(expected)):
        problems.append("unexpected: %s at step %d" % key)

    if not history["epochs"]:
        problems.append("the history is empty: nothing was compared")
    for p in problems:
        print("tensorboard_compare: " + p, file=sys.stderr)
    if problems:
        return 1
    print("tensorboard_compare: %d epochs, %d scalars at %d steps match the history"
          % (len(history["epochs"]), len(points), len({k[1] for k in points})))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
