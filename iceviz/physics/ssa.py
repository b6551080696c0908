"""The Shallow Shelf Approximation for floating ice, as residuals of given fields and their derivatives.

Floating ice has no basal drag; the depth-integrated momentum balance
(MacAyeal 1989) with the driving stress of a floating slab is::

    ∂x[2μh(2u_x + v_y)] + ∂y[μh(u_y + v_x)] = ρ g' h h_x
    ∂x[μh(u_y + v_x)] + ∂y[2μh(u_x + 2v_y)] = ρ g' h h_y

with g' = g (1 − ρ/ρ_w). At the calving front, outward unit normal n, the
depth-integrated stress balances the ocean's pressure (divided by h)::

    2μ(2u_x + v_y) n_x + μ(u_y + v_x) n_y = ½ ρ g' h n_x
    μ(u_y + v_x) n_x + 2μ(u_x + 2v_y) n_y = ½ ρ g' h n_y

The functions below take :class:`Jet` objects (a value and its first and,
where needed, second derivatives, as numpy arrays or torch tensors) and
return the residuals (left side minus right side). They are written once for
any consistent set of units: physical (``buoyancy`` = ρ g' in Pa/m) or the
dimensionless form of the viscosity PINN (``buoyancy`` = 1, see
:mod:`iceviz.models.viscosity`). Only arithmetic is used, so numpy arrays and
torch tensors both work and autograd flows through.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from iceviz.physics.units import GRAVITY, RHO_ICE, RHO_WATER

BUOYANCY: float = RHO_ICE * GRAVITY * (1.0 - RHO_ICE / RHO_WATER)
"""ρ g' = ρ g (1 − ρ/ρ_w) [Pa/m]: the driving stress of a floating slab per unit thickness and slope."""


class Jet(NamedTuple):
    """A field and its derivatives at a set of points.

    ``xx``, ``xy``, ``yy`` may be None where only first derivatives are needed.
    """

    value: Any
    x: Any
    y: Any
    xx: Any = None
    xy: Any = None
    yy: Any = None


def strain_rates(u: Jet, v: Jet) -> tuple[Any, Any, Any]:
    """(ε_xx, ε_yy, ε_xy) = (u_x, v_y, ½(u_y + v_x))."""
    return u.x, v.y, 0.5 * (u.y + v.x)


def effective_strain_rate(u: Jet, v: Jet) -> Any:
    """ε_e = sqrt(u_x² + v_y² + u_x v_y + ¼(u_y + v_x)²), the second invariant of the 2-D strain rate."""
    exx, eyy, exy = strain_rates(u, v)
    return (exx**2 + eyy**2 + exx * eyy + exy**2) ** 0.5


def momentum_residual(u: Jet, v: Jet, h: Jet, mu: Jet, buoyancy: float = BUOYANCY) -> tuple[Any, Any]:
    """The two SSA momentum residuals (f₁, f₂), left side minus right side.

    Parameters
    ----------
    u, v : velocity with first and second derivatives.
    h : thickness with first derivatives.
    mu : effective viscosity with first derivatives.
    buoyancy : ρ g' in the units of the other arguments (1 in dimensionless form).
    """
    mh, mh_x, mh_y = mu.value * h.value, mu.x * h.value + mu.value * h.x, mu.y * h.value + mu.value * h.y
    a = 2 * u.x + v.y  # normal stress, x (over μ, 2μ(2u_x + v_y) = 2μ a)
    b = u.x + 2 * v.y  # normal stress, y
    c = u.y + v.x  # shear (over μ)
    f1 = 2 * mh_x * a + 2 * mh * (2 * u.xx + v.xy) + mh_y * c + mh * (u.yy + v.xy) - buoyancy * h.value * h.x
    f2 = mh_x * c + mh * (u.xy + v.xx) + 2 * mh_y * b + 2 * mh * (u.xy + 2 * v.yy) - buoyancy * h.value * h.y
    return f1, f2


def front_residual(u: Jet, v: Jet, h: Any, mu: Any, nx: Any, ny: Any,
                   buoyancy: float = BUOYANCY) -> tuple[Any, Any]:
    """The calving-front stress residuals (g₁, g₂), divided by h; ``h`` and ``mu`` are plain values."""
    a, b, c = 2 * u.x + v.y, u.x + 2 * v.y, u.y + v.x
    g1 = 2 * mu * a * nx + mu * c * ny - 0.5 * buoyancy * h * nx
    g2 = mu * c * nx + 2 * mu * b * ny - 0.5 * buoyancy * h * ny
    return g1, g2
