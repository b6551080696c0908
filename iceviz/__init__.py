"""iceviz: physics-informed learning of Antarctic ice flow, live in the browser."""

__version__ = "0.1.0"
