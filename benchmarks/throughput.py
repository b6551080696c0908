"""Training throughput of iceviz's dfNN against re-implementations of the reference method.

Same network (4 hidden layers x 64, SiLU, scalar stream function), batch 1024,
AdamW, Byrd training data, one CPU thread. Three contenders, interleaved so
that machine noise hits them alike, medians over repetitions:

- ``iceviz``: the real ``FluxTrainer.fit`` loop (hand-written stream-function
  gradient, fused AdamW, everything the trainer does per step);
- ``reference``: the reference's training loop as published (a shuffled
  ``DataLoader`` over a ``TensorDataset``, ``autograd.grad(create_graph=True)``
  for the stream-function gradient, double backward for the weights, a
  ``loss.item()`` per batch);
- ``reference-lean``: the same double-backward method with the data loader
  replaced by tensor indexing, the fastest plain-autograd version we know.

Usage: python benchmarks/throughput.py [--byrd DIR] [--repeats 5] [--epochs 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import DEFAULT_BYRD, machine, median, write_json
from iceviz.data.byrd import load_byrd
from iceviz.training.trainers import make_trainer

WIDTH, DEPTH, BATCH = 64, 4, 1024


def reference_net() -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(2, WIDTH), nn.SiLU()]
    for _ in range(DEPTH - 1):
        layers += [nn.Linear(WIDTH, WIDTH), nn.SiLU()]
    layers.append(nn.Linear(WIDTH, 1))
    return nn.Sequential(*layers)


def _rot_grad(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    g = torch.autograd.grad(net(x).sum(), x, create_graph=True)[0]
    return torch.stack([g[:, 1], -g[:, 0]], dim=1)


def reference_epochs(x: torch.Tensor, y: torch.Tensor, epochs: int, lean: bool) -> float:
    """Seconds for ``epochs`` epochs of the double-backward method."""
    torch.manual_seed(0)
    net = reference_net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        if lean:
            perm = torch.randperm(len(x))
            batches = ((x[perm[i:i + BATCH]], y[perm[i:i + BATCH]]) for i in range(0, len(x), BATCH))
        else:
            batches = iter(loader)
        total = 0.0
        for xb, yb in batches:
            xb = xb.requires_grad_(True)
            opt.zero_grad()
            loss = ((_rot_grad(net, xb) - yb) ** 2).mean()
            loss.backward()
            opt.step()
            total += loss.sqrt().item() if not lean else 0.0
    return time.perf_counter() - start


def iceviz_epochs(problem, epochs: int) -> float:
    trainer = make_trainer("dfnn", problem, device="cpu", epochs=epochs, seed=0, width=WIDTH, depth=DEPTH,
                           batch_size=BATCH, activation="silu")
    return trainer.fit().seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--byrd", default=DEFAULT_BYRD)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed block")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    problem = load_byrd(args.byrd)
    scale = problem.scale
    x = torch.as_tensor(scale.xy_to_scaled(problem.train.xy), dtype=torch.float32)
    y = torch.as_tensor(problem.train.q / scale.flux, dtype=torch.float32)
    n = len(x) * args.epochs

    iceviz_epochs(problem, 1)  # warm-up
    reference_epochs(x, y, 1, lean=True)
    times: dict[str, list[float]] = {"iceviz": [], "reference": [], "reference-lean": []}
    for _ in range(args.repeats):
        times["iceviz"].append(iceviz_epochs(problem, args.epochs))
        times["reference"].append(reference_epochs(x, y, args.epochs, lean=False))
        times["reference-lean"].append(reference_epochs(x, y, args.epochs, lean=True))
    rates = {k: n / median(v) for k, v in times.items()}
    write_json(args.json, {
        "benchmark": "dfnn training throughput (samples/s), byrd-mcor, 4x64 SiLU, batch 1024, 1 thread",
        "machine": machine(),
        "repeats": args.repeats,
        "samples_per_block": n,
        "samples_per_second_median": {k: round(v) for k, v in rates.items()},
        "ratio_iceviz_over_reference": round(rates["iceviz"] / rates["reference"], 2),
        "ratio_iceviz_over_reference_lean": round(rates["iceviz"] / rates["reference-lean"], 2),
    })


if __name__ == "__main__":
    main()
