#!/usr/bin/python3
"""Exports torchvision weights for the xfer trainer.

  export_weights.py --arch efficientnet_b0 --out b0.pt [--labels-out imagenet.txt]
      torch.save(state_dict) of the IMAGENET1K_V1 weights. Our C++ B0 has the
      same tensor names: `trainer ... --arch efficientnet_b0 --weights b0.pt`.
  export_weights.py --arch resnet50 --out resnet50_base.pt
      any torchvision classifier as a TorchScript *base*: its final Linear
      layer (and a Dropout right before it) replaced by identity, so that
      `trainer ... --arch torchscript --base FILE` puts its own head on top.
      Works for efficientnet_b0 too with --torchscript.
  --random       seeded random weights instead of the pretrained ones; needs no
                 internet (tests use it).
  --labels-out   also writes the ImageNet class names, one per line (for
                 `trainer predict --labels`); needs no internet.

Run it with a Python that has torch and torchvision (on Debian 12:
/usr/bin/python3 with python3-torchvision). Downloading pretrained weights
needs internet; offline it fails with a message saying so. torchvision caches
downloads under ~/.cache/torch.
"""
import argparse
import sys

import torch
import torchvision


def classifiers():
    return torchvision.models.list_models(module=torchvision.models)


def build(arch, random):
    if arch not in classifiers():
        raise SystemExit(f"export_weights: unknown --arch {arch!r}; torchvision classifiers are: "
                         + ", ".join(classifiers()))
    try:
        return torchvision.models.get_model(arch, weights=None if random else "DEFAULT")
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise SystemExit(f"export_weights: cannot download the pretrained {arch} weights "
                         f"({error}); this needs internet. Use --random for random weights.")


def strip_head(model, arch):
    """Replaces the ImageNet classification layer by identity.

    The classification layer is the model's last Linear (fc, classifier[-1],
    heads.head, head). A Dropout right before it goes too: TransferModel's
    head brings its own. Layers before that (ConvNeXt's LayerNorm, VGG's and
    MobileNetV3's hidden Linear layers) stay: they belong to the features.
    SqueezeNet classifies with a Conv2d: its classifier becomes a global
    average pool, so its base gives [N, 512] like the others give [N, C].
    """
    if getattr(model, "aux_logits", False):  # googlenet, inception_v3
        model.aux_logits = False
        for aux in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, aux):
                setattr(model, aux, None)
    last = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            last = name
    if last is None:
        if not hasattr(model, "classifier"):
            raise SystemExit(f"export_weights: {arch} has no Linear layer and no classifier; "
                             "cannot make a base from it")
        model.classifier = torch.nn.AdaptiveAvgPool2d((1, 1))
        return model
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, torch.nn.Sequential):
        layers = list(parent.children())
        layers.pop()  # the Linear: Sequential children are in order, and it is the last Linear
        while layers and isinstance(layers[-1], torch.nn.Dropout):
            layers.pop()
        replacement = torch.nn.Sequential(*layers) if layers else torch.nn.Identity()
        grand_name, _, attr = parent_name.rpartition(".")
        grand = model.get_submodule(grand_name) if grand_name else model
        setattr(grand, attr, replacement)
    else:
        setattr(parent, child, torch.nn.Identity())
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", required=True, help="torchvision model name")
    parser.add_argument("--out", required=True, help="file to write")
    parser.add_argument("--random", action="store_true",
                        help="seeded random weights (no download)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    parser.add_argument("--torchscript", action="store_true",
                        help="write efficientnet_b0 as a TorchScript base too")
    parser.add_argument("--labels-out", help="also write the ImageNet class names here")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = build(args.arch, args.random)
    model.eval()
    if args.labels_out:
        categories = torchvision.models.get_model_weights(args.arch).DEFAULT.meta["categories"]
        with open(args.labels_out, "w") as out:
            out.write("\n".join(categories) + "\n")
        print(f"wrote {args.labels_out}: {len(categories)} ImageNet class names")

    source = "random" if args.random else "pretrained"
    if args.arch == "efficientnet_b0" and not args.torchscript:
        torch.save(model.state_dict(), args.out)
        print(f"wrote {args.out}: efficientnet_b0 state dict ({source})")
        return 0

    base = strip_head(model, args.arch)
    size = 299 if args.arch.startswith("inception") else 224
    probe = torch.zeros(1, 3, size, size)
    try:
        scripted = torch.jit.script(base)
        with torch.no_grad():
            if not isinstance(scripted(probe), torch.Tensor):
                # googlenet and inception_v3 return named tuples when scripted.
                raise TypeError("the scripted model does not return one tensor")
    except Exception as error:  # not every model scripts; tracing fixes the control flow
        print(f"export_weights: torch.jit.script did not give a usable base ({error}); "
              f"tracing at {size} px instead", file=sys.stderr)
        with torch.no_grad():
            scripted = torch.jit.trace(base, probe)
    with torch.no_grad():
        shape = tuple(scripted(probe).shape)
    scripted.save(args.out)
    print(f"wrote {args.out}: TorchScript base of {args.arch} ({source}), "
          f"output {shape} for {size} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
