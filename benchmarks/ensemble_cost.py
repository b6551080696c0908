"""What K ensemble members cost, trained together as one batched network, against one member alone.

One optimisation step as the flux trainer takes it (the data MSE on a batch of observations, backward, one
AdamW step; for the PINN, its divergence by forward-mode tangents in the loss too), on one CPU thread, with the
default network (4 hidden layers x 64, SiLU) and the batch sizes the size-aware defaults choose (32 points for
a few hundred observations, up to 512 for Byrd's 23,000). For each batch size: the seconds per step of one
network and of the K-member ensemble (iceviz.models.ensemble), interleaved so that machine noise hits both
alike, medians over repeats; K separate runs would cost K times the single network's step.

Usage: python -m benchmarks.ensemble_cost [--members 5] [--batches 32,128,512] [--repeats 5] [--steps 200]
                                          [--json benchmarks/results/ensemble_cost.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import machine, write_json
from iceviz.models.ensemble import stack_members
from iceviz.models.flux import DirectFlux, DivergenceFreeFlux, FluxNet

WIDTH, DEPTH = 64, 4
COMMON = dict(center=(0.5, 0.5), half=0.5, amplitude=1.0)
KINDS = {"dfnn": DivergenceFreeFlux, "pinn": DirectFlux}


def _loss(model: FluxNet, kind: str, xy: torch.Tensor, target: torch.Tensor, ensemble: bool) -> torch.Tensor:
    """The members' data MSE summed (one member: its MSE), with the PINN's mean |∇·q| beside it."""
    if kind == "pinn":
        q, div = model.members_and_divergence(xy) if ensemble else model.flux_and_divergence(xy)
        misfit = ((q - target) ** 2).mean(dim=(-2, -1)) + div.abs().mean(dim=-1)
    else:
        q = model.members(xy) if ensemble else model(xy)
        misfit = ((q - target) ** 2).mean(dim=(-2, -1))
    return misfit.sum()


def seconds_per_step(model: FluxNet, kind: str, batch: int, steps: int, ensemble: bool) -> float:
    g = torch.Generator().manual_seed(0)
    xy, target = torch.rand(4096, 2, generator=g), torch.randn(4096, 2, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    start = time.perf_counter()
    for i in range(steps):
        j = torch.randint(len(xy), (batch,), generator=g)
        opt.zero_grad(set_to_none=True)
        _loss(model, kind, xy[j], target[j], ensemble).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def measure(kind: str, members: int, batch: int, repeats: int, steps: int) -> dict:
    single, together = [], []
    for _ in range(repeats):
        torch.manual_seed(0)
        one = KINDS[kind](WIDTH, DEPTH, "silu", **COMMON)
        nets = []
        for seed in range(members):
            torch.manual_seed(seed)
            nets.append(KINDS[kind](WIDTH, DEPTH, "silu", **COMMON))
        single.append(seconds_per_step(one, kind, batch, steps, ensemble=False))
        together.append(seconds_per_step(stack_members(nets), kind, batch, steps, ensemble=True))
    s, t = statistics.median(single), statistics.median(together)
    return {"model": kind, "batch": batch, "members": members, "single_ms_per_step": round(1e3 * s, 3),
            "ensemble_ms_per_step": round(1e3 * t, 3), "ensemble_over_single": round(t / s, 2),
            "separate_runs_over_single": members}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--batches", default="32,128,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(kind, args.members, int(b), args.repeats, args.steps)
            for kind in KINDS for b in args.batches.split(",")]
    for row in rows:
        print(f"{row['model']:5s} batch {row['batch']:4d}: one {row['single_ms_per_step']:.2f} ms, "
              f"{row['members']} together {row['ensemble_ms_per_step']:.2f} ms ({row['ensemble_over_single']:.2f}x)")
    write_json(args.json, {"benchmark": "K flux members as one batched network against one member, per step",
                           "machine": machine(), "width": WIDTH, "depth": DEPTH, "rows": rows})


if __name__ == "__main__":
    main()
