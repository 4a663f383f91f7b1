#!/usr/bin/python3
"""The transfer recipe in PyTorch DDP: head training on a frozen base, then fine-tuning with
BatchNorm frozen, in one process per rank, keeping the head between the phases. It is the
phase-by-phase side of bench/accuracy/run.sh, written the way the shared peer
(../shared/peers/pytorch_ddp.py, whose data loading and preprocessing it imports) trains one
phase: torchvision EfficientNet-B0, gloo, channels-last, a fresh torch.nn.Linear(1280, 100)
head, torch.optim.Adam with its defaults, per-epoch shuffling from (seed, epoch), flips only.
Each phase starts a fresh Adam, as the trainer does.

  peer_recipe.py DATA_DIR --weights BASE.pt [--ranks 2] [--threads 1] [--batch 64]
                 [--head-epochs 2] [--head-lr 1e-3] [--finetune-epochs 2] [--finetune-lr 1e-4]
                 [--seed 0] [--peer PATH]

BASE.pt: a torchvision efficientnet_b0 state dict (1000-class classifier, replaced here).
Prints one line: "peer-recipe ...: after head top1=... top3=...; test top1=... top3=..."
"""
import argparse
import importlib.util
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
import torchvision


def load_peer(path):
    spec = importlib.util.spec_from_file_location("pytorch_ddp_peer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate(model, peer, x, y, rank, ranks):
    """Top-1 and top-3 hits summed over ranks; each rank takes interleaved slices of 256."""
    model.eval()
    c1 = c3 = 0
    with torch.no_grad():
        for i in range(rank * 256, len(y), 256 * ranks):
            top3 = model(peer.prep(x[i:i + 256], 32, False).contiguous(
                memory_format=torch.channels_last)).topk(3, 1).indices
            yy = y[i:i + 256]
            c1 += (top3[:, 0] == yy).sum().item()
            c3 += (top3 == yy[:, None]).any(1).sum().item()
    hits = torch.tensor([c1, c3], dtype=torch.float64)
    dist.all_reduce(hits)
    return hits[0].item() / len(y), hits[1].item() / len(y)


def worker(rank, a):
    peer = load_peer(a.peer)
    torch.set_num_threads(a.threads)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29534")
    dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    torch.manual_seed(a.seed)
    x, y = peer.load(os.path.join(a.data, "train.bin"), 0)
    xt, yt = peer.load(os.path.join(a.data, "test.bin"), 0)
    m = torchvision.models.efficientnet_b0()
    m.load_state_dict(torch.load(a.weights))
    m.classifier[1] = torch.nn.Linear(1280, 100)
    m = m.to(memory_format=torch.channels_last)
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    n = len(y) // a.ranks
    global_epoch = 0
    results = {}
    for phase, epochs, lr in (("head", a.head_epochs, a.head_lr),
                              ("finetune", a.finetune_epochs, a.finetune_lr)):
        for p in m.parameters():
            p.requires_grad_(phase == "finetune")
        for p in m.classifier.parameters():
            p.requires_grad_(True)
        if phase == "finetune":
            for b in bns:
                for p in b.parameters():
                    p.requires_grad_(False)
        ddp = torch.nn.parallel.DistributedDataParallel(m)
        opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr)
        for _ in range(epochs):
            g = torch.Generator()
            g.manual_seed(global_epoch + 1000 * a.seed)
            global_epoch += 1
            perm = torch.randperm(len(y), generator=g)[rank * n:(rank + 1) * n]
            m.train()
            if phase == "head":
                m.features.eval()
            else:
                for b in bns:
                    b.eval()
            for i in range(0, n - a.batch + 1, a.batch):
                idx = perm[i:i + a.batch]
                xb = peer.prep(x[idx], 32, True).contiguous(memory_format=torch.channels_last)
                opt.zero_grad()
                F.cross_entropy(ddp(xb), y[idx]).backward()
                opt.step()
        results[phase] = evaluate(m, peer, xt, yt, rank, a.ranks)
    if rank == 0:
        head, test = results["head"], results["finetune"]
        print(f"peer-recipe ranks={a.ranks} batch/rank={a.batch} seed={a.seed}: after head "
              f"top1={head[0]:.4f} top3={head[1]:.4f}; test top1={test[0]:.4f} top3={test[1]:.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--head-epochs", type=int, default=2)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--finetune-lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peer", default=os.path.join(here, "..", "..", "..", "shared", "peers",
                                                   "pytorch_ddp.py"))
    args = ap.parse_args()
    mp.spawn(worker, args=(args,), nprocs=args.ranks)
