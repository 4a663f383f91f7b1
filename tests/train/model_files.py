"""Reads the training job's model files and checkpoints (pickled dicts, see
trainer/models/model_file.h) with Debian's PyTorch, for the e2e tests.

  model_files.py max-diff A B [PREFIX]   largest |a - b| over tensors whose name starts with PREFIX
  model_files.py equal A B KIND          exit 1 unless tensors of KIND are bit-identical:
                                         base (all but classifier.*) or bn-stats (running_mean/var)
  model_files.py state FILE KEY          one field of the stored training state
"""
import json
import sys

import torch


def load(path):
    return torch.load(path, map_location="cpu")


def tensors(path, keep):
    obj = load(path)
    sd = obj["state_dict"] if "state_dict" in obj else obj  # a model file, or a plain state dict
    return {k: v for k, v in sd.items() if keep(k)}


def main(argv):
    cmd = argv[1]
    if cmd == "max-diff":
        prefix = argv[4] if len(argv) > 4 else ""
        a = tensors(argv[2], lambda k: k.startswith(prefix))
        b = tensors(argv[3], lambda k: k.startswith(prefix))
        if a.keys() != b.keys() or not a:
            print("tensor names differ or are empty", file=sys.stderr)
            return 2
        print(max(float((a[k].double() - b[k].double()).abs().max()) for k in a))
        return 0
    if cmd == "equal":
        kind = argv[4]
        keep = {
            "base": lambda k: not k.startswith("classifier."),
            "bn-stats": lambda k: k.endswith("running_mean") or k.endswith("running_var"),
        }[kind]
        a = tensors(argv[2], keep)
        b = tensors(argv[3], keep)
        if a.keys() != b.keys() or not a:
            print("tensor names differ or are empty", file=sys.stderr)
            return 2
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        if differ:
            print("%d of %d tensors differ, e.g. %s" % (len(differ), len(a), differ[0]))
            return 1
        print("%d tensors bit-identical" % len(a))
        return 0
    if cmd == "state":
        print(json.loads(load(argv[2])["xfer_training"])[argv[3]])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
