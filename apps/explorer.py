"""iceviz explorer: `panel serve apps/explorer.py` (binds to localhost by default)."""

from iceviz.app.explorer import build_app

build_app().servable()
