"""The nine-model table on Byrd Glacier: test RMSE / MAE / MAD, several seeds, one command.

Every run trains on the byrd-mcor training points only, under the same
wall-clock budget on one CPU thread, and is scored on the 22,045 held-out
test points (scaled units of the paper: flux / 70,000 m²/yr, divergence per
normalised length). Published figures (mean of 5 runs) are printed beside ours.

Usage: python -m benchmarks.byrd_table [--models dfnn,pinn,...] [--seeds 3] [--seconds 20]
                                       [--set KEY=VALUE ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics


from benchmarks.common import DEFAULT_BYRD, machine, parse_run_args, write_json
from iceviz.data.byrd import load_byrd
from iceviz.models.registry import model_names
from iceviz.training.trainers import make_trainer

PUBLISHED = {  # test RMSE / MAD, mean of 5 runs, "Mass Conservation on Rails"
    "dfnn": (0.391, 0.0), "pinn": (0.466, 0.5), "nn": (0.478, 7.8),
    "dfnn-dir": (0.385, 0.0), "pinn-dir": (0.441, 0.7), "nn-dir": (0.448, 7.1),
    "dfnn-aux": (0.447, 0.0), "pinn-aux": (0.493, 0.2), "nn-aux": (0.537, 10.1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--byrd", default=DEFAULT_BYRD)
    parser.add_argument("--models", default=",".join(model_names("flux")))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    args, overrides = parse_run_args(parser)

    problem = load_byrd(args.byrd)
    rows = {}
    for name in args.models.split(","):
        runs = []
        for seed in range(args.seeds):
            trainer = make_trainer(name, problem, device="cpu", seed=seed, epochs=1_000_000,
                                   seconds=args.seconds, **overrides)
            result = trainer.fit()
            runs.append(dict(seed=seed, epochs=result.epochs, seconds=round(result.seconds, 2),
                             **{k: result.metrics[k] for k in ("rmse", "mae", "mad", "rmse_phys", "mad_phys")}))
            print(f"{name:9s} seed {seed}: RMSE {runs[-1]['rmse']:.4f} MAE {runs[-1]['mae']:.4f} "
                  f"MAD {runs[-1]['mad']:.3g} epochs {result.epochs}", flush=True)
        mean = {k: statistics.fmean(r[k] for r in runs) for k in ("rmse", "mae", "mad", "rmse_phys", "mad_phys")}
        sd = statistics.stdev(r["rmse"] for r in runs) if len(runs) > 1 else 0.0
        rows[name] = dict(mean=mean, rmse_sd=sd, published_rmse=PUBLISHED.get(name, (None,))[0],
                          published_mad=PUBLISHED.get(name, (None, None))[1], runs=runs)

    print(f"\n| model | test RMSE (mean ± sd of {args.seeds}) | published | MAE | MAD | epochs in {args.seconds:g} s |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        m = row["mean"]
        epochs = statistics.fmean(r["epochs"] for r in row["runs"])
        print(f"| {name} | {m['rmse']:.3f} ± {row['rmse_sd']:.3f} | {row['published_rmse']} | {m['mae']:.3f} "
              f"| {m['mad']:.2g} | {epochs:.0f} |")
    write_json(args.json, {"benchmark": "byrd-mcor nine-model table", "machine": machine(), "seconds": args.seconds,
                           "seeds": args.seeds, "overrides": overrides, "rows": rows})


if __name__ == "__main__":
    main()
