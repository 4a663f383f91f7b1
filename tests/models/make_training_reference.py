#!/usr/bin/python3
"""Writes one training step of torchvision's EfficientNet-B0 and torch.optim.Adam.

The reference for tests/models/training_parity_test.cc. Run with Debian's
/usr/bin/python3 (python3-torchvision). In --out DIR:
  weights.pt    torch.save(state_dict) of a seeded torchvision
                efficientnet_b0(num_classes=--num-classes) made to look
                pretrained (see pretrain_batchnorm) and its head scaled so the
                logits are O(1): the cross entropy's gradient is then not one
                sample's one-hot.
  reference.pt  torch.save of a dict of tensors, the model set up for --phase
                as TransferModel::set_phase does, then one step: forward in
                train mode, cross_entropy (mean), backward,
                torch.optim.Adam(trainable parameters, lr=--lr) with its
                DEFAULT eps, step:
    input, labels          the batch
    loss                   0-dim
    grad.NAME              gradient of every trainable parameter
    param.NAME             every parameter after the step
    buffer.NAME            every buffer after the step (BatchNorm running
                           statistics: the forward moves them in phase full)
    loss64, grad64.NAME, param64.NAME, buffer64.NAME
                           the same step in float64 (weights and input
                           converted exactly), rounded to float32: the answer
                           that float32 arithmetic in any order approximates,
                           to tell rounding from a real difference
    spread.NAME            0-dim: how far torchvision's own float32 gradient is
                           from float64, max|g - g64| over NCHW (grad.NAME)
                           and channels-last (the model and batch converted
                           as PyTorch's channels-last recipe does): the size
                           of float32 rounding in this gradient
    dropped                (--stochastic-depth only) how many residual
                           branches (sample, block) the masks dropped
    param_eps.NAME         (--diagnostic-eps E) the float32 parameters after
                           torch.optim.Adam with eps=E from the same
                           gradients: separates an eps choice from anything
                           else in the parameter comparison

--stochastic-depth P trains with torchvision's stochastic depth (P for the
last block) after torch.manual_seed(--step-seed): LibTorch's C++ side seeded
alike draws the same Bernoulli masks in the same block order. Dropout stays 0
(the C++ head's CounterDropout draws other masks by design).
"""
import argparse
import copy
import os
import sys

import torch
import torchvision


def batchnorms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def pretrain_batchnorm(model, generator, batch, image_size):
    """Random BatchNorm affine parameters, then running statistics measured
    on a batch of its own, as pretraining leaves a network.

    Not make_reference.perturb_batchnorm: that moves the statistics after
    measuring them, and over B0's 49 BatchNorms the moves compound: eval-mode
    activations reach ~4e3 and float32 torchvision's own finetune gradients
    are 1.3 (relative) from float64, so no 1e-4 comparison means anything.
    Here eval-mode activations stay O(10) and float32 is 2e-5 from float64;
    the statistics are still another batch's, so a BatchNorm in the wrong
    mode moves the finetune and head gradients by 1.5 and 0.9 (relative).
    """
    bns = batchnorms(model)
    for bn in bns:
        n = bn.num_features
        with torch.no_grad():
            bn.weight.copy_(torch.randn(n, generator=generator) * 0.2 + 1)
            bn.bias.copy_(torch.randn(n, generator=generator) * 0.1)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: the statistics of exactly this batch
    model.train()
    for module in model.modules():
        # No blocks dropped while measuring: the same weights with and without
        # --stochastic-depth.
        if isinstance(module, torchvision.ops.StochasticDepth):
            module.eval()
    with torch.no_grad():
        model(torch.randn(batch, 3, image_size, image_size, generator=generator))
    for bn in bns:
        bn.num_batches_tracked.fill_(7)
        bn.momentum = 0.1
    model.eval()


def set_phase(model, phase):
    """trainer/models/transfer_model.cc set_phase + train(), in torchvision terms."""
    model.train()
    model.requires_grad_(True)
    if phase == "head":
        model.features.requires_grad_(False)
        model.features.eval()
    elif phase == "finetune":
        for bn in batchnorms(model):
            bn.eval()
            bn.weight.requires_grad_(False)
            bn.bias.requires_grad_(False)


def adam_step(params, grads, lr, eps):
    """torch.optim.Adam's first step on copies of `params` (name -> tensor)."""
    leaves = {}
    for name, grad in grads.items():
        leaf = params[name].detach().clone().requires_grad_(True)
        leaf.grad = grad.clone()
        leaves[name] = leaf
    torch.optim.Adam(list(leaves.values()), lr=lr, eps=eps).step()
    after = {name: p.detach().clone() for name, p in params.items()}
    after.update({name: leaf.detach() for name, leaf in leaves.items()})
    return after


def count_dropped(model):
    """Hooks every StochasticDepth; returns the list its drops are added to."""
    dropped = []

    def hook(module, inputs, output):
        # A dropped branch is multiplied by 0: its whole row is zero.
        dropped.append(int((output.flatten(1) == 0).all(1).sum()))

    for module in model.modules():
        if isinstance(module, torchvision.ops.StochasticDepth):
            module.register_forward_hook(hook)
    return dropped


def train_step(model, x, labels, phase, lr, stochastic_depth_seed):
    """One step as a PyTorch user writes it: loss, gradients, and the
    parameters before and after the step and the buffers after it."""
    set_phase(model, phase)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    if stochastic_depth_seed is not None:
        # The C++ test seeds LibTorch's generator alike before its forward.
        torch.manual_seed(stochastic_depth_seed)
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()
             if p.requires_grad}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    optimizer.step()
    after = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    return loss.detach(), grads, before, after, buffers


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["head", "finetune", "full"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--stochastic-depth", type=float, default=0.0)
    parser.add_argument("--step-seed", type=int, default=77)
    parser.add_argument("--diagnostic-eps", type=float, default=None)
    args = parser.parse_args()

    # One thread: the same float32 rounding on every run, as in the C++ test.
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    model = torchvision.models.efficientnet_b0(num_classes=args.num_classes,
                                               stochastic_depth_prob=args.stochastic_depth)
    model.classifier[0].p = 0.0  # torchvision 0.14's B0 takes no dropout argument
    pretrain_batchnorm(model, generator, args.batch, args.image_size)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=generator)
    labels = torch.randint(0, args.num_classes, (args.batch,), generator=generator)
    # A random network's logits are large and its softmax nearly one-hot:
    # the loss gradient would then come from a sample or two. Scale the head
    # so the logits are O(1) and every sample's gradient counts.
    with torch.no_grad():
        scale = 3.0 / model(x).abs().max()
        model.classifier[1].weight.mul_(scale)
    os.makedirs(args.out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(args.out, "weights.pt"))

    seed = args.step_seed if args.stochastic_depth > 0 else None
    model64 = copy.deepcopy(model).double()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    dropped = count_dropped(model)
    loss, grads, before, after, buffers = train_step(model, x, labels, args.phase, args.lr, seed)
    loss64, grads64, _, after64, buffers64 = train_step(model64, x.double(), labels, args.phase,
                                                        args.lr, seed)
    grads_cl = train_step(model_cl, x.contiguous(memory_format=torch.channels_last), labels,
                          args.phase, args.lr, seed)[1]

    reference = {"input": x, "labels": labels, "loss": loss}
    for prefix, tensors in [("grad", grads), ("param", after), ("buffer", buffers)]:
        reference.update({f"{prefix}.{name}": t.contiguous() for name, t in tensors.items()})
    for prefix, tensors in [("grad64", grads64), ("param64", after64), ("buffer64", buffers64)]:
        reference.update({f"{prefix}.{name}": (t.float() if t.is_floating_point() else t)
                          for name, t in tensors.items()})
    reference["loss64"] = loss64.float()
    for name, exact in grads64.items():
        reference[f"spread.{name}"] = torch.tensor(
            max(float((g[name].double() - exact).abs().max()) for g in (grads, grads_cl)))
    if seed is not None:
        reference["dropped"] = torch.tensor(sum(dropped))
    if args.diagnostic_eps is not None:
        diagnostic = adam_step(before, grads, args.lr, args.diagnostic_eps)
        reference.update({f"param_eps.{name}": t.contiguous() for name, t in diagnostic.items()})
    torch.save(reference, os.path.join(args.out, "reference.pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
