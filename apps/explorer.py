"""iceviz explorer: `panel serve apps/explorer.py` (binds to localhost by default).

Its jobs run on an embedded Dask cluster; `panel serve apps/explorer.py --args --scheduler ADDRESS` (or
$ICEVIZ_SCHEDULER) sends them to an existing one instead.
"""

import argparse
import sys

from iceviz.app.explorer import build_app

parser = argparse.ArgumentParser(prog="panel serve apps/explorer.py --args")
parser.add_argument("--scheduler", metavar="ADDRESS", default="",
                    help="run jobs on the Dask cluster whose scheduler is at ADDRESS (default $ICEVIZ_SCHEDULER, "
                         "else an embedded cluster)")
args, _ = parser.parse_known_args(sys.argv[1:])

build_app(args.scheduler).servable()
