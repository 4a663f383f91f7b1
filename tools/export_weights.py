#!/usr/bin/python3
"""Exports torchvision weights for the xfer trainer.

  export_weights.py --arch efficientnet_b0 --out b0.pt
      torch.save(state_dict) of the IMAGENET1K_V1 weights: our C++ B0 has the
      same tensor names, so `trainer --arch efficientnet_b0 --weights b0.pt`.
  export_weights.py --arch resnet50 --out resnet50_base.pt
      any torchvision classifier as a TorchScript *base*: the classifier is
      replaced by identity, so `trainer --arch torchscript --base FILE` puts
      its own head on top.
  --random  seeded random weights instead of the pretrained ones; needs no
            internet (tests use it).

Downloading pretrained weights needs internet; offline it fails with a
message saying so (torchvision caches downloads under ~/.cache/torch).
"""
import argparse
import sys

import torch
import torchvision

# Attribute holding the final classifier, per architecture family. Replacing
# it with identity leaves the pooled (or, for squeezenet, unpooled) features.
_HEAD_ATTRIBUTES = ("fc", "classifier", "heads", "head")


def build(arch, random):
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise SystemExit(f"export_weights: unknown --arch {arch!r}; torchvision classifiers are: "
                         + ", ".join(torchvision.models.list_models(module=torchvision.models)))
    try:
        return torchvision.models.get_model(arch, weights=None if random else "DEFAULT")
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise SystemExit(f"export_weights: cannot download the pretrained {arch} weights "
                         f"({error}); this needs internet. Use --random for random weights.")


def strip_head(model, arch):
    for name in _HEAD_ATTRIBUTES:
        if hasattr(model, name):
            setattr(model, name, torch.nn.Identity())
            if hasattr(model, "aux_logits"):  # googlenet / inception
                model.aux_logits = False
                for aux in ("aux1", "aux2", "AuxLogits"):
                    if hasattr(model, aux):
                        setattr(model, aux, None)
            return model
    raise SystemExit(f"export_weights: no classifier attribute ({', '.join(_HEAD_ATTRIBUTES)}) "
                     f"found on {arch}; cannot make a base from it")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", required=True, help="torchvision model name")
    parser.add_argument("--out", required=True, help="file to write")
    parser.add_argument("--random", action="store_true",
                        help="seeded random weights (no download)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = build(args.arch, args.random)
    model.eval()
    if args.arch == "efficientnet_b0":
        torch.save(model.state_dict(), args.out)
        print(f"wrote {args.out}: efficientnet_b0 state dict "
              f"({'random' if args.random else 'IMAGENET1K_V1'})")
        return 0

    base = strip_head(model, args.arch)
    try:
        scripted = torch.jit.script(base)
    except Exception as error:  # scripting is not supported by every model
        print(f"export_weights: torch.jit.script failed ({error}); tracing instead",
              file=sys.stderr)
        size = 299 if args.arch.startswith("inception") else 224
        scripted = torch.jit.trace(base, torch.zeros(1, 3, size, size))
    with torch.no_grad():
        width = scripted(torch.zeros(1, 3, 224, 224)).shape
    scripted.save(args.out)
    print(f"wrote {args.out}: TorchScript base of {args.arch} "
          f"({'random' if args.random else 'pretrained'}), output {tuple(width)} for 224 px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
