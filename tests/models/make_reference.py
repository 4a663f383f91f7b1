#!/usr/bin/python3
"""Writes torchvision reference data for the C++ model parity tests.

Run with Debian's /usr/bin/python3 (python3-torchvision). In --out DIR:
  weights.pt    torch.save(state_dict) of a seeded random model whose BatchNorm
                affine parameters and running statistics are perturbed, so a
                wrong eps, momentum or eval/train mode shows in the logits.
  reference.pt  torch.save({"input": x, "logits": eval-mode logits}).
  base.pt       (--arch resnet18 only) TorchScript base: resnet18 with fc
                replaced by identity. Its weights.pt then holds our
                TransferModel's names: base.* plus classifier.1.*.
"""
import argparse
import os
import sys

import torch
import torchvision


def perturb_batchnorm(model, generator):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            with torch.no_grad():
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                module.num_batches_tracked.fill_(7)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=["efficientnet_b0", "resnet18"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=generator)
    os.makedirs(args.out, exist_ok=True)

    if args.arch == "efficientnet_b0":
        model = torchvision.models.efficientnet_b0(num_classes=args.num_classes)
        perturb_batchnorm(model, generator)
        model.eval()
        with torch.no_grad():
            logits = model(x)
        torch.save(model.state_dict(), os.path.join(args.out, "weights.pt"))
    else:
        base = torchvision.models.resnet18()
        perturb_batchnorm(base, generator)
        base.fc = torch.nn.Identity()
        base.eval()
        head = torch.nn.Linear(512, args.num_classes)
        with torch.no_grad():
            logits = head(base(x))
        torch.jit.script(base).save(os.path.join(args.out, "base.pt"))
        state = {"base." + k: v for k, v in base.state_dict().items()}
        state["classifier.1.weight"] = head.weight.detach()
        state["classifier.1.bias"] = head.bias.detach()
        torch.save(state, os.path.join(args.out, "weights.pt"))

    torch.save({"input": x, "logits": logits}, os.path.join(args.out, "reference.pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
