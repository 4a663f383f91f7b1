#!/usr/bin/python3
"""Writes torchvision reference data for the C++ model parity tests.

Run with Debian's /usr/bin/python3 (python3-torchvision). In --out DIR:
  weights.pt    torch.save(state_dict) of a seeded random model whose BatchNorm
                affine parameters and running statistics are perturbed, so a
                wrong eps, momentum or eval/train mode shows in the logits.
  reference.pt  torch.save({"input": x, "logits": eval-mode logits}); for
                efficientnet_b0 also "logits_float64": the same network in
                float64 (rounded to float32), the answer float32 arithmetic
                in any order (e.g. with BatchNorm folded) approximates.
  base.pt       (--arch resnet18 only) TorchScript base: resnet18 with fc
                replaced by identity. Its weights.pt then holds our
                TransferModel's names: base.* plus classifier.1.*.

--arch predict writes what tests/models/predict_test.sh compares
`trainer predict` with:
  weights.pt    B0 state dict as above, --num-classes classes.
  model.pt      the same weights as an xfer model file (trainer/models/
                model_file.h) written by Python's torch.save, with labels.
  labels.txt    the labels, one per line.
  image.png     224x224 random RGB; small.png 61x97 (resized by predict);
  image.jpg     the 224x224 pixels as JPEG.
  reference.json  {"image.png": [p_0, ...], "small.png": [...]}: softmax of
                the eval-mode logits after the ImageNet preprocessing.
"""
import argparse
import copy
import json
import os
import sys

import torch
import torchvision


def perturb_batchnorm(model, generator, image_size):
    """Makes every BatchNorm's parameters and running statistics matter.

    A freshly initialised network's running statistics (0 and 1) normalise
    nothing: in eval mode its activations collapse and the logits hardly
    depend on the input, so a wrong layer could still match. The statistics
    are first measured on a random batch, as pretraining would have, then
    scaled and shifted at random, and the affine parameters drawn at random.
    """
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: the stats of exactly this batch
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, image_size, image_size, generator=generator))
    for bn in batchnorms:
        n = bn.num_features
        with torch.no_grad():
            bn.weight.copy_(torch.randn(n, generator=generator) * 0.2 + 1)
            bn.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            bn.running_mean.add_(torch.randn(n, generator=generator) * 0.1 *
                                 bn.running_var.sqrt())
            bn.running_var.mul_(torch.rand(n, generator=generator) * 0.4 + 0.8)
            bn.num_batches_tracked.fill_(7)
        bn.momentum = 0.1
    model.eval()


def preprocess(image, size):
    """trainer/models/preprocess.h, op for op: [3, H, W] uint8 -> [1, 3, S, S]."""
    x = image.unsqueeze(0).to(torch.float32) / 255.0
    if x.shape[2] != size or x.shape[3] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def write_predict_reference(args, generator):
    model = torchvision.models.efficientnet_b0(num_classes=args.num_classes)
    perturb_batchnorm(model, generator, 224)
    images = {
        "image.png": torch.randint(0, 256, (3, 224, 224), generator=generator, dtype=torch.uint8),
        "small.png": torch.randint(0, 256, (3, 61, 97), generator=generator, dtype=torch.uint8),
    }
    # A random network's logits are huge and its softmax one-hot: scale the
    # head so the probabilities spread over the classes and all of them count.
    with torch.no_grad():
        logits = model(preprocess(images["image.png"], 224))
        scale = 3.0 / logits.abs().max()
        model.classifier[1].weight.mul_(scale)
        model.classifier[1].bias.mul_(scale)
    state = model.state_dict()
    torch.save(state, os.path.join(args.out, "weights.pt"))
    labels = [f"label {i}" for i in range(args.num_classes)]
    with open(os.path.join(args.out, "labels.txt"), "w") as out:
        out.write("\n".join(labels) + "\n")
    torch.save({"xfer_model_format": 1, "arch": "efficientnet_b0",
                "num_classes": args.num_classes, "image_size": 224, "labels": labels,
                "base_file": "", "state_dict": state, "epoch": 3},
               os.path.join(args.out, "model.pt"))
    reference = {}
    for name, image in images.items():
        torchvision.io.write_png(image, os.path.join(args.out, name))
        with torch.no_grad():
            probabilities = torch.softmax(model(preprocess(image, 224)), dim=1)[0]
        reference[name] = probabilities.tolist()
    torchvision.io.write_jpeg(images["image.png"], os.path.join(args.out, "image.jpg"))
    with open(os.path.join(args.out, "reference.json"), "w") as out:
        json.dump(reference, out)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=["efficientnet_b0", "resnet18", "predict"],
                        required=True)
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

    if args.arch == "predict":
        return write_predict_reference(args, generator)
    reference = {}
    if args.arch == "efficientnet_b0":
        model = torchvision.models.efficientnet_b0(num_classes=args.num_classes)
        perturb_batchnorm(model, generator, args.image_size)
        with torch.no_grad():
            logits = model(x)
            reference["logits_float64"] = copy.deepcopy(model).double()(x.double()).float()
        torch.save(model.state_dict(), os.path.join(args.out, "weights.pt"))
    else:
        base = torchvision.models.resnet18()
        perturb_batchnorm(base, generator, args.image_size)
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

    reference.update(input=x, logits=logits)
    torch.save(reference, os.path.join(args.out, "reference.pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
