"""The nine-model table on Byrd Glacier: test RMSE / MAE / MAD, several seeds, one command.

Every run trains on the byrd-mcor training points only, under the same
wall-clock budget on one CPU thread (on ``iceviz sweep``'s runner: a local Dask
cluster of ``--workers`` single-threaded workers, one by default), and is scored on the 22,045 held-out
test points (scaled units of the paper: flux / 70,000 m²/yr, divergence per
normalised length). Published figures (mean of 5 runs) are printed beside ours.

Usage: python -m benchmarks.byrd_table [--models dfnn,pinn,...] [--seeds 3] [--seconds 20] [--workers 1]
                                       [--set KEY=VALUE ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics


from benchmarks.common import DEFAULT_BYRD, machine, parse_run_args, sweep, write_json
from iceviz.models.registry import model_names
from iceviz.training.sweep import sweep_runs

SCORES = ("rmse", "mae", "mad", "rmse_phys", "mad_phys")
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
    parser.add_argument("--workers", type=int, default=1, help="runs at once (Dask workers, one thread each)")
    args, overrides = parse_run_args(parser)

    models = args.models.split(",")
    runs = sweep_runs(models, [f"byrd-mcor:{args.byrd}"], list(range(args.seeds)),
                      {k: [v] for k, v in overrides.items()})
    done = sweep(runs, args.workers, {"epochs": 1_000_000, "seconds": args.seconds})
    rows = {}
    for name in models:
        runs = [{k: r[k] for k in ("seed", "epochs", "seconds", *SCORES)} for r in done if r["model"] == name]
        for r in runs:
            print(f"{name:9s} seed {r['seed']}: RMSE {r['rmse']:.4f} MAE {r['mae']:.4f} MAD {r['mad']:.3g} "
                  f"epochs {r['epochs']}")
        mean = {k: statistics.fmean(r[k] for r in runs) for k in SCORES}
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
                           "seeds": args.seeds, "workers": args.workers, "overrides": overrides, "rows": rows})


if __name__ == "__main__":
    main()
