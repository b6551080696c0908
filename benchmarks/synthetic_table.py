"""dfNN and PINN on the five synthetic benchmark fields: test RMSE and MAD, several seeds.

Each seed draws its own observation noise (2 % of the mean field magnitude)
and its own initialisation; the test set is the noise-free 20 x 20 grid.
Training uses the fields' own hyper-parameter hints (see iceviz/data/synthetic.py), on
``iceviz sweep``'s runner (a local Dask cluster of ``--workers`` single-threaded workers).

Usage: python -m benchmarks.synthetic_table [--models dfnn,pinn] [--seeds 8] [--workers 1] [--set KEY=VALUE ...]
                                            [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics


from benchmarks.common import machine, parse_run_args, sweep, write_json

FIELDS = ("curve", "branching", "deflection", "ridges", "edge")
PUBLISHED_RMSE = {  # mean of 8 runs
    "dfnn": dict(curve=0.108, branching=0.223, deflection=0.075, ridges=0.110, edge=0.175),
    "pinn": dict(curve=0.132, branching=0.120, deflection=0.173, ridges=0.082, edge=0.136),
}
PUBLISHED_PINN_MAD = dict(curve=0.136, branching=0.079, deflection=0.094, ridges=0.085, edge=0.109)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="dfnn,pinn")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="runs at once (Dask workers, one thread each)")
    args, overrides = parse_run_args(parser)

    models = args.models.split(",")
    # each seed its own noise draw (the data spec's seed) and initialisation
    runs = [{"model": name, "data": f"synthetic:{field}?seed={seed}", "seed": seed, **overrides}
            for name in models for field in FIELDS for seed in range(args.seeds)]
    rows = sweep(runs, args.workers, {})
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in models:
        results[name] = {}
        for field in FIELDS:
            mine = [r for r in rows if r["model"] == name and r["data"].startswith(f"synthetic:{field}?")]
            results[name][field] = dict(
                rmse=statistics.fmean(r["rmse"] for r in mine), rmse_sd=statistics.stdev(r["rmse"] for r in mine),
                mad=statistics.fmean(r["mad"] for r in mine), seconds=statistics.fmean(r["seconds"] for r in mine),
                published_rmse=PUBLISHED_RMSE.get(name, {}).get(field),
            )
            r = results[name][field]
            print(f"{name:6s} {field:10s} RMSE {r['rmse']:.3f} ± {r['rmse_sd']:.3f} (published {r['published_rmse']}) "
                  f"MAD {r['mad']:.3g}  {r['seconds']:.1f} s/run", flush=True)

    print(f"\n| model | {' | '.join(FIELDS)} |")
    print("|---|" + "---|" * len(FIELDS))
    for name, row in results.items():
        print(f"| {name} RMSE | " + " | ".join(f"{row[f]['rmse']:.3f} ({row[f]['published_rmse']})" for f in FIELDS) + " |")
        print(f"| {name} MAD | " + " | ".join(f"{row[f]['mad']:.2g}" for f in FIELDS) + " |")
    write_json(args.json, {"benchmark": "synthetic fields", "machine": machine(), "seeds": args.seeds,
                           "overrides": overrides, "results": results, "published_pinn_mad": PUBLISHED_PINN_MAD})


if __name__ == "__main__":
    main()
