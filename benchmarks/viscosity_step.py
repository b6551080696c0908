"""Viscosity PINN: cost of one loss-and-gradient evaluation, forward-propagated jets against nested autograd.

The SSA residual needs first and second derivatives of the networks with
respect to their inputs. iceviz carries them through each layer in the
forward pass (:meth:`iceviz.models.viscosity.JetMLP.jet`); the usual way, and
DIFFICE_jax's, nests reverse-mode differentiation. This script times the whole
training loss and its parameter gradient both ways, on the same networks and
the same batches (the reference's 1,000-point batches and our default 500),
one CPU thread, alternating the two methods so that both see the same machine
load, and checks that both give the same loss.

Usage: python -m benchmarks.viscosity_step [--data SPEC] [--repeats 7] [--steps 20] [--json OUT]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import machine, median, parse_run_args, write_json
from benchmarks.viscosity_pinn import SYNDATA
from iceviz.models.viscosity import JetMLP
from iceviz.training.trainers import make_trainer


def nested_autograd_jet(net: JetMLP):
    """A drop-in for ``net.jet`` that takes the input derivatives by nested reverse-mode autograd."""

    def jet(x: torch.Tensor, order: int = 2) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        y = net(x)
        grads = [torch.autograd.grad(y[:, k].sum(), x, create_graph=True)[0] for k in range(y.shape[1])]
        rows = [y, torch.stack([g[:, 0] for g in grads], 1), torch.stack([g[:, 1] for g in grads], 1)]
        if order == 2:
            second = [(torch.autograd.grad(g[:, 0].sum(), x, create_graph=True)[0],
                       torch.autograd.grad(g[:, 1].sum(), x, create_graph=True)[0]) for g in grads]
            rows += [torch.stack([gx[:, 0] for gx, _ in second], 1), torch.stack([gx[:, 1] for gx, _ in second], 1),
                     torch.stack([gy[:, 1] for _, gy in second], 1)]
        return torch.stack(rows)

    return jet


def step_seconds(trainer, batch, steps: int) -> tuple[float, float]:
    """Seconds per loss + backward (mean over ``steps``) and the loss (the unweighted sum of its terms)."""
    loss = None
    start = time.perf_counter()
    for _ in range(steps):
        trainer.model.zero_grad(set_to_none=True)
        terms = trainer.loss_terms(batch)
        trainer.total_loss(terms).backward()
        loss = sum(float(v.detach()) for v in terms.values())
    return (time.perf_counter() - start) / steps, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=SYNDATA)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args, _ = parse_run_args(parser)
    rows = []
    for points in (1000, 500):
        trainer = make_trainer("viscosity-pinn", args.data, device="cpu", batch_size=points, collocation=points,
                               front_points=points // 2)
        batch = trainer.batch()
        nets = [*trainer.model.flows, *trainer.model.log_mus]
        times: dict[str, list[float]] = {"jets": [], "autograd": []}
        losses = {}
        for _ in range(args.repeats):
            for method in ("jets", "autograd"):
                for net in nets:
                    if method == "autograd":
                        net.jet = nested_autograd_jet(net)
                    else:
                        net.__dict__.pop("jet", None)
                seconds, losses[method] = step_seconds(trainer, batch, args.steps)
                times[method].append(seconds)
        ms = {k: 1000 * median(v) for k, v in times.items()}
        rows.append(dict(points=points, ms_jets=ms["jets"], ms_autograd=ms["autograd"],
                         ratio=ms["autograd"] / ms["jets"], loss_jets=losses["jets"], loss_autograd=losses["autograd"],
                         runs_ms={k: [1000 * t for t in v] for k, v in times.items()}))
        print(f"{points} points: jets {ms['jets']:.1f} ms, nested autograd {ms['autograd']:.1f} ms per loss+gradient "
              f"({ms['autograd'] / ms['jets']:.1f}x); losses {losses['jets']:.6g} / {losses['autograd']:.6g}", flush=True)
    write_json(args.json, dict(benchmark="viscosity_step", data=args.data, machine=machine(), rows=rows))


if __name__ == "__main__":
    main()
