"""Synthetic flux fields with exactly known, divergence-free truth.

Two families live here.

* The five benchmark fields of the divergence-free neural-GP follow-up work
  (``curve``, ``branching``, ``deflection``, ``ridges``, ``edge``), defined on the
  unit square (science.md, section 1) and placed isotropically in a 100 km box.
* ``glacier``: an outlet glacier of our own design at the Byrd Glacier box in
  EPSG:3031, with tributaries, a narrowing trunk and a surface elevation.

Every field is ``q = rot ψ + (analytic divergence-free extra)`` with
``rot ψ := (∂ψ/∂x₂, −∂ψ/∂x₁)`` and the gradient of ψ written out analytically.
All the field maths is written once for both numpy and torch arrays (the
namespace is picked from the input), so tests can compare the analytic gradient
with torch autograd and take the divergence of the very same code by autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from iceviz.data.problem import DataError, DirectionGuidance, FluxObservations, FluxProblem, FluxScale

Array = Any  # numpy.ndarray or torch.Tensor (float64)

BENCHMARK_NAMES: tuple[str, ...] = ("curve", "branching", "deflection", "ridges", "edge")
SYNTHETIC_NAMES: tuple[str, ...] = BENCHMARK_NAMES + ("glacier",)

DEFAULT_NOISE = 0.02
DEFAULT_SEED = 0
NOISE_BOUNDS = (0.0, 1.0)

#: Physical placement of the unit-square benchmarks: a 100 km box, flux unit 10 000 m²/yr.
BENCHMARK_SCALE = FluxScale(x0=-50_000.0, y0=300_000.0, length=100_000.0, flux=10_000.0, surface=1000.0)
BENCHMARK_GRID_SHAPE = (50, 50)
BENCHMARK_DIRECTION_N = 40
TEST_GRID_N = 20
DIRECTION_MIN_RELATIVE = 1e-9

# ---------------------------------------------------------------------------
# array-namespace helpers (numpy or torch, chosen from the input)


def _xp(x: Array) -> Any:
    """numpy, or torch when ``x`` is a torch tensor (torch is imported lazily)."""
    if type(x).__module__.startswith("torch"):
        import torch

        return torch
    return np


def _stack(xp: Any, parts: list[Array]) -> Array:
    return xp.stack(parts, -1)


def _logistic(xp: Any, z: Array) -> Array:
    """σ(z) = 1 / (1 + e^(−z)), overflow-free for either sign of z."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _logistic_prime(xp: Any, z: Array) -> Array:
    """σ'(z) = σ(z)(1 − σ(z)) = e^(−|z|) / (1 + e^(−|z|))²."""
    e = xp.exp(-xp.abs(z))
    return e / (1.0 + e) ** 2


def _softplus(xp: Any, t: Array) -> Array:
    """log(1 + e^t), stable: max(t, 0) + log1p(e^(−|t|))."""
    return 0.5 * (t + xp.abs(t)) + xp.log1p(xp.exp(-xp.abs(t)))


# ---------------------------------------------------------------------------
# Gaussian bumps


@dataclass(frozen=True)
class Bump:
    """A weighted Gaussian bump w·N(x; μ, Σ).

    N(x; μ, Σ) = exp(−½ (x−μ)ᵀ Σ⁻¹ (x−μ)) / (2π √det Σ), with Σ used exactly as
    listed (row-wise, possibly not symmetric).
    """

    mu: tuple[float, float]
    sigma: tuple[tuple[float, float], tuple[float, float]]
    weight: float

    @property
    def inverse(self) -> tuple[float, float, float, float]:
        """Entries (a11, a12, a21, a22) of Σ⁻¹."""
        (s11, s12), (s21, s22) = self.sigma
        det = s11 * s22 - s12 * s21
        return s22 / det, -s12 / det, -s21 / det, s11 / det

    @property
    def norm(self) -> float:
        """1 / (2π √det Σ)."""
        (s11, s12), (s21, s22) = self.sigma
        return 1.0 / (2.0 * math.pi * math.sqrt(s11 * s22 - s12 * s21))


def bumps_value_and_gradient(x: Array, bumps: tuple[Bump, ...]) -> tuple[Array, Array]:
    """G(x) = Σ_k w_k N(x; μ_k, Σ_k) and its gradient.

    With d = x − μ and A = Σ⁻¹ the exponent is −½ dᵀAd, whose gradient is
    −½ (A + Aᵀ) d (A need not be symmetric), so ∇N = −½ N (A + Aᵀ) d.

    Parameters
    ----------
    x : (N, 2) float64 array or tensor, unit-square coordinates.

    Returns
    -------
    value (N,), gradient (N, 2).
    """
    xp = _xp(x)
    value = 0.0 * x[..., 0]
    g1 = 0.0 * x[..., 0]
    g2 = 0.0 * x[..., 0]
    for b in bumps:
        a11, a12, a21, a22 = b.inverse
        d1 = x[..., 0] - b.mu[0]
        d2 = x[..., 1] - b.mu[1]
        n = b.weight * b.norm * xp.exp(-0.5 * (a11 * d1 * d1 + (a12 + a21) * d1 * d2 + a22 * d2 * d2))
        value = value + n
        g1 = g1 - 0.5 * n * (2.0 * a11 * d1 + (a12 + a21) * d2)
        g2 = g2 - 0.5 * n * ((a12 + a21) * d1 + 2.0 * a22 * d2)
    return value, _stack(xp, [g1, g2])


# ---------------------------------------------------------------------------
# base stream functions: each returns (value (N,), gradient (N, 2))


def _linear_base(theta_deg: float) -> Callable[[Array], tuple[Array, Array]]:
    """B_θ(x) = cos θ·x₁ + sin θ·x₂, gradient (cos θ, sin θ)."""
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))

    def base(x: Array) -> tuple[Array, Array]:
        xp = _xp(x)
        one = 1.0 + 0.0 * x[..., 0]
        return c * x[..., 0] + s * x[..., 1], _stack(xp, [c * one, s * one])

    return base


def _cubic_base(x: Array) -> tuple[Array, Array]:
    """(x₁ + 0.2 x₂)³, gradient 3 (x₁ + 0.2 x₂)² (1, 0.2)."""
    xp = _xp(x)
    t = x[..., 0] + 0.2 * x[..., 1]
    return t**3, _stack(xp, [3.0 * t**2, 0.6 * t**2])


def _edge_base(x: Array) -> tuple[Array, Array]:
    """σ(6 B₁₀₀ − 4), gradient 6 σ'(·) (cos 100°, sin 100°)."""
    xp = _xp(x)
    c, s = math.cos(math.radians(100.0)), math.sin(math.radians(100.0))
    z = 6.0 * (c * x[..., 0] + s * x[..., 1]) - 4.0
    dz = 6.0 * _logistic_prime(xp, z)
    return _logistic(xp, z), _stack(xp, [c * dz, s * dz])


# ---------------------------------------------------------------------------
# analytic divergence-free extra terms (unit-square coordinates)


def _no_extra(x: Array) -> Array:
    return 0.0 * x


def _curve_extra(x: Array) -> Array:
    """((x₂ + 0.5)², sin(π x₁)): ∂/∂x₁ of the first + ∂/∂x₂ of the second = 0."""
    xp = _xp(x)
    return _stack(xp, [(x[..., 1] + 0.5) ** 2, xp.sin(math.pi * x[..., 0])])


def _branching_extra(x: Array) -> Array:
    """(x₁x₂, −½x₂² + x₁ − 0.8): divergence x₂ − x₂ = 0."""
    xp = _xp(x)
    return _stack(xp, [x[..., 0] * x[..., 1], -0.5 * x[..., 1] ** 2 + x[..., 0] - 0.8])


def _deflection_extra(x: Array) -> Array:
    """(a² + b² + 3, −2ab)/10 with a = 6x₂ − 3, b = 6x₁ − 3: divergence (12b − 12b)/10 = 0."""
    xp = _xp(x)
    a = 6.0 * x[..., 1] - 3.0
    b = 6.0 * x[..., 0] - 3.0
    return _stack(xp, [(a * a + b * b + 3.0) / 10.0, -2.0 * a * b / 10.0])


@dataclass(frozen=True)
class BenchmarkField:
    """q = rot_scale · rot ψ + extra(x), ψ = base(x) + bump_scale · G(x), on [0, 1]²."""

    name: str
    description: str
    base: Callable[[Array], tuple[Array, Array]]
    bump_scale: float
    bumps: tuple[Bump, ...]
    rot_scale: float
    extra: Callable[[Array], Array]

    def stream(self, x: Array) -> Array:
        """ψ(x), (N,)."""
        b, _ = self.base(x)
        g, _ = bumps_value_and_gradient(x, self.bumps)
        return b + self.bump_scale * g

    def stream_gradient(self, x: Array) -> Array:
        """∇ψ(x) = ∇base + bump_scale ∇G, (N, 2), analytic."""
        _, db = self.base(x)
        _, dg = bumps_value_and_gradient(x, self.bumps)
        return db + self.bump_scale * dg

    def __call__(self, x: Array) -> Array:
        """The field q(x), (N, 2), in the field's own units."""
        xp = _xp(x)
        grad = self.stream_gradient(x)
        rot = _stack(xp, [grad[..., 1], -grad[..., 0]])
        return self.rot_scale * rot + self.extra(x)


def _bumps(*rows: tuple[tuple[float, float], tuple[tuple[float, float], tuple[float, float]], float]) -> tuple[Bump, ...]:
    return tuple(Bump(mu, sigma, w) for mu, sigma, w in rows)


BENCHMARKS: dict[str, BenchmarkField] = {
    "curve": BenchmarkField(
        "curve",
        "flow curving round a bump, with a strong analytic background",
        _linear_base(90.0),
        0.5,
        _bumps(
            ((0.4, 0.7), ((0.05, 0.03), (0.002, 0.01)), 0.2),
            ((0.2, -0.05), ((0.05, 0.0), (0.0, 0.05)), -1.0),
        ),
        0.2,
        _curve_extra,
    ),
    "branching": BenchmarkField(
        "branching",
        "flow splitting into branches",
        _linear_base(1.0),
        0.2,
        _bumps(
            ((0.0, -0.1), ((0.003, 0.0), (0.0, 0.04)), -0.8),
            ((0.5, 1.0), ((0.05, 0.0), (0.0, 0.05)), 0.5),
            ((1.0, 0.7), ((0.3, 0.0), (0.0, 0.01)), 0.3),
            ((0.5, 0.5), ((0.006, 0.0), (0.008, 0.004)), 0.03),
            ((0.8, 0.2), ((0.004, 0.004), (0.0, 0.006)), -0.03),
        ),
        0.1,
        _branching_extra,
    ),
    "deflection": BenchmarkField(
        "deflection",
        "flow deflected round obstacles",
        _linear_base(90.0),
        0.2,
        _bumps(
            ((0.3, 0.7), ((0.05, 0.02), (0.002, 0.01)), 0.2),
            ((0.9, 0.1), ((0.2, 0.0), (0.0, 0.1)), -1.5),
            ((0.05, 0.05), ((0.05, 0.0), (0.0, 0.05)), 1.0),
        ),
        0.4,
        _deflection_extra,
    ),
    "ridges": BenchmarkField(
        "ridges",
        "cubic shear flow with ridges",
        _cubic_base,
        0.1,
        _bumps(
            ((0.2, 0.3), ((0.05, 0.0), (0.01, 0.1)), -0.2),
            ((0.5, 1.0), ((0.2, 0.0), (0.0, 0.1)), 1.2),
            ((1.0, 0.7), ((0.3, 0.0), (0.0, 0.01)), 0.2),
            ((1.0, 0.2), ((0.3, 0.0), (0.0, 0.01)), 0.2),
        ),
        1.0,
        _no_extra,
    ),
    "edge": BenchmarkField(
        "edge",
        "a sharp jet along a logistic edge",
        _edge_base,
        0.1,
        _bumps(
            ((0.15, 0.5), ((0.003, 0.0), (0.005, 0.003)), 0.005),
            ((0.7, 0.9), ((0.02, 0.001), (0.0, 0.01)), 0.1),
            ((0.5, 0.5), ((0.006, 0.0), (0.008, 0.004)), 0.02),
            ((0.8, 0.4), ((0.006, 0.004), (0.002, 0.006)), -0.01),
        ),
        1.0,
        _no_extra,
    ),
}

#: The 9 flight lines of the benchmarks: (start, end, number of points), ends included.
BENCHMARK_FLIGHT_LINES: tuple[tuple[tuple[float, float], tuple[float, float], int], ...] = (
    ((0.1667, 0.0), (0.0, 0.3333), 11),
    ((0.3333, 0.0), (0.0, 0.5), 19),
    ((0.4, 0.0), (0.0, 0.6), 21),
    ((0.4667, 0.0), (0.0, 0.9333), 31),
    ((0.0, 0.5), (0.8333, 1.0), 30),
    ((0.0, 0.6667), (0.4667, 1.0), 17),
    ((0.6667, 0.0), (0.8, 1.0), 30),
    ((0.2333, 0.0), (1.0, 0.2333), 24),
    ((0.5, 0.0), (1.0, 0.1333), 15),
)


def benchmark_train_points() -> np.ndarray:
    """The 196 training locations on the 9 flight lines, unit-square coordinates, (196, 2)."""
    return np.concatenate(
        [np.linspace(start, end, n) for start, end, n in BENCHMARK_FLIGHT_LINES], axis=0
    )


def benchmark_train_lines() -> np.ndarray:
    """The flight line (0-8) of each of :func:`benchmark_train_points`, (196,)."""
    return np.repeat(np.arange(len(BENCHMARK_FLIGHT_LINES)), [n for _, _, n in BENCHMARK_FLIGHT_LINES])


def benchmark_test_points(n: int = TEST_GRID_N) -> np.ndarray:
    """The n × n test grid of linspace(0, 1, n)², x₁ fastest, (n², 2)."""
    g = np.linspace(0.0, 1.0, n)
    x1, x2 = np.meshgrid(g, g)
    return np.column_stack([x1.ravel(), x2.ravel()])


def benchmark_field(name: str) -> BenchmarkField:
    """The benchmark field called ``name`` (DataError listing the valid names otherwise)."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise DataError(
            f"synthetic:{name}: unknown synthetic field {name!r}; valid: {', '.join(SYNTHETIC_NAMES)}"
        ) from None


def mean_magnitude(name: str) -> float:
    """Mean |q| of a benchmark field over its 20 × 20 test grid (field units)."""
    q = benchmark_field(name)(benchmark_test_points())
    return float(np.mean(np.hypot(q[:, 0], q[:, 1])))


# ---------------------------------------------------------------------------
# shared problem-building helpers


def check_noise(noise: float, spec: str) -> float:
    """Validate a relative noise level (DataError outside NOISE_BOUNDS)."""
    lo, hi = NOISE_BOUNDS
    if not (math.isfinite(noise) and lo <= noise <= hi):
        raise DataError(f"{spec}: noise={noise} is outside [{lo:g}, {hi:g}] (a fraction of the mean |q|)")
    return float(noise)


def add_noise(q: np.ndarray, std: float, seed: int) -> np.ndarray:
    """q + Gaussian noise of standard deviation ``std`` per component (numpy PCG64 seeded)."""
    rng = np.random.default_rng(seed)
    return q + std * rng.standard_normal(q.shape)


def unit_directions(xy: np.ndarray, q: np.ndarray, min_relative: float = DIRECTION_MIN_RELATIVE) -> DirectionGuidance:
    """Unit vectors q/|q|, dropping points where |q| < min_relative · max |q|."""
    mag = np.hypot(q[:, 0], q[:, 1])
    keep = mag >= min_relative * float(mag.max(initial=0.0)) if mag.size else mag > 0
    keep &= mag > 0
    return DirectionGuidance(xy=np.ascontiguousarray(xy[keep]), unit=q[keep] / mag[keep, None])


def grid_points(bounds: tuple[float, float, float, float], n: int) -> np.ndarray:
    """An n × n grid over ``bounds`` with the edges included, x fastest, (n², 2)."""
    xmin, xmax, ymin, ymax = bounds
    gx, gy = np.meshgrid(np.linspace(xmin, xmax, n), np.linspace(ymin, ymax, n))
    return np.column_stack([gx.ravel(), gy.ravel()])


@dataclass(frozen=True)
class BenchmarkTruth:
    """Exact field of a benchmark on metres (N, 2) -> m²/yr (N, 2); picklable."""

    name: str
    scale: FluxScale = BENCHMARK_SCALE

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        f = benchmark_field(self.name)
        return self.scale.flux * f(self.scale.xy_to_scaled(np.asarray(xy, dtype=np.float64).reshape(-1, 2)))


def benchmark_truth(name: str, scale: FluxScale = BENCHMARK_SCALE) -> Callable[[np.ndarray], np.ndarray]:
    """Exact field of a benchmark as a callable on metres (N, 2) -> m²/yr (N, 2)."""
    benchmark_field(name)  # DataError for unknown names
    return BenchmarkTruth(name, scale)


def benchmark_problem(name: str, noise: float = DEFAULT_NOISE, seed: int = DEFAULT_SEED, spec: str | None = None) -> FluxProblem:
    """One of the five benchmark fields as a :class:`FluxProblem` in physical units.

    Train: the 196 flight-line points with Gaussian noise of std
    ``noise × mean |q|`` (mean over the test grid). Test: the noise-free 20 × 20
    grid. The unit square maps to the 100 km box of :data:`BENCHMARK_SCALE`.
    """
    spec = spec or f"synthetic:{name}"
    f = benchmark_field(name)
    noise = check_noise(noise, spec)
    scale = BENCHMARK_SCALE
    xtr, xte = benchmark_train_points(), benchmark_test_points()
    mean_q = mean_magnitude(name)
    q_train = add_noise(f(xtr), noise * mean_q, seed)
    bounds = (scale.x0, scale.x0 + scale.length, scale.y0, scale.y0 + scale.length)
    truth = benchmark_truth(name, scale)
    xdir = grid_points(bounds, BENCHMARK_DIRECTION_N)
    return FluxProblem(
        spec=spec,
        train=FluxObservations(xy=scale.xy_to_phys(xtr), q=scale.flux * q_train, line=benchmark_train_lines()),
        test=FluxObservations(xy=scale.xy_to_phys(xte), q=scale.flux * f(xte)),
        scale=scale,
        bounds=bounds,
        direction=unit_directions(xdir, truth(xdir)),
        truth=truth,
        grid_shape=BENCHMARK_GRID_SHAPE,
        description=f"synthetic {name}: {f.description} (unit square as a 100 km box)",
        notes=[
            f"Gaussian noise on train: std = {noise:g} × mean |q| ({mean_q:.4f} field units), seed {seed}",
            "test = noise-free 20 × 20 grid; scaled units are the field's own units (flux unit 10 000 m²/yr)",
            "direction guidance = exact unit flux on a 40 × 40 grid covering the whole box, test points included",
        ],
    )


# ---------------------------------------------------------------------------
# synthetic:glacier — an outlet glacier of our own design in the Byrd box
#
# Flow-aligned frame: u along the trunk (increasing downstream), v across it,
# (u, v) a rotation of (x, y) about the box centre, so rot is the same in both
# frames: q_u = ∂ψ/∂v, q_v = −∂ψ/∂u. Every stream k contributes
#
#     ψ_k = F_k · σ(z_k),   z_k = (v − f_k(u)) / w_k(u),
#
# a smooth step of height F_k (m³/yr) across its centreline f_k(u), so it
# carries exactly F_k between its flanks, whatever its path and width; where
# streams share a centreline their fluxes add. Tributary centrelines approach
# the trunk centreline downstream of their confluence, so the trunk flux grows
# downstream, and the flux per unit width F/(4w) at the centre grows where the
# trunk narrows. q = rot Σψ_k is exactly divergence-free.

GLACIER_BOUNDS = (400_000.0, 600_000.0, -950_000.0, -750_000.0)
GLACIER_SCALE = FluxScale(x0=400_000.0, y0=-950_000.0, length=200_000.0, flux=100_000.0, surface=2000.0)
GLACIER_GRID_SHAPE = (100, 100)
GLACIER_DIRECTION_N = 100
GLACIER_TILE = 20_000.0
GLACIER_SPACING = 800.0
GLACIER_N_LINES = 20


@dataclass(frozen=True)
class Tributary:
    """A tributary joining the trunk.

    side : +1 joins from the +v flank (left looking downstream), −1 from the −v flank.
    confluence : u (m) where its centreline bends into the trunk's.
    slope : |dv/du| of its straight upstream reach relative to the trunk.
    bend : length (m) over which it curves into the trunk.
    flux : total flux it carries, m³/yr.
    width : logistic half-width scale of its upstream reach, m.
    """

    side: float
    confluence: float
    slope: float
    bend: float
    flux: float
    width: float


@dataclass(frozen=True)
class GlacierDesign:
    """Parameters of the synthetic outlet glacier (lengths in m, fluxes in m³/yr)."""

    centre: tuple[float, float] = (500_000.0, -850_000.0)
    angle_deg: float = 240.0  # downstream direction: (cos, sin) = (−0.5, −0.87), towards −x, −y
    bend_amplitude: float = 7_000.0  # trunk centreline c(u) = A tanh((u − u_b)/L_b)
    bend_centre: float = 10_000.0
    bend_length: float = 40_000.0
    trunk_flux: float = 3.0e9
    width_upstream: float = 4_500.0
    width_narrow: float = 2_200.0
    narrow_at: float = 30_000.0
    narrow_length: float = 12_000.0
    width_outlet: float = 3_200.0
    outlet_at: float = 95_000.0
    outlet_length: float = 12_000.0
    background_flux: float = 2.0e9
    background_width_upstream: float = 45_000.0
    background_width_downstream: float = 18_000.0
    background_at: float = 20_000.0
    background_length: float = 40_000.0
    tributaries: tuple[Tributary, ...] = (
        Tributary(+1.0, -70_000.0, 0.9, 15_000.0, 1.5e9, 3_000.0),
        Tributary(-1.0, -45_000.0, 0.7, 15_000.0, 2.0e9, 3_500.0),
        Tributary(+1.0, -5_000.0, 1.5, 10_000.0, 1.2e9, 2_500.0),
        Tributary(-1.0, 15_000.0, 1.4, 12_000.0, 2.5e9, 3_000.0),
    )


GLACIER = GlacierDesign()


def _blend(xp: Any, u: Array, upstream: float, downstream: float, at: float, length: float) -> tuple[Array, Array]:
    """upstream → downstream smoothly around u = at: value and d/du.

    b(u) = d + (a − d) σ(−(u − at)/L),  b'(u) = −(a − d) σ'(−(u − at)/L) / L.
    """
    t = -(u - at) / length
    return downstream + (upstream - downstream) * _logistic(xp, t), -(upstream - downstream) * _logistic_prime(xp, t) / length


def _glacier_frame(xy: Array, g: GlacierDesign) -> tuple[Array, Array]:
    """(u, v): along- and across-trunk coordinates, metres."""
    a = math.radians(g.angle_deg)
    dx = xy[..., 0] - g.centre[0]
    dy = xy[..., 1] - g.centre[1]
    return math.cos(a) * dx + math.sin(a) * dy, -math.sin(a) * dx + math.cos(a) * dy


def _trunk_centre(xp: Any, u: Array, g: GlacierDesign) -> tuple[Array, Array]:
    """c(u) = A tanh((u − u_b)/L_b) and c'(u)."""
    t = xp.tanh((u - g.bend_centre) / g.bend_length)
    return g.bend_amplitude * t, g.bend_amplitude * (1.0 - t * t) / g.bend_length


def _trunk_width(xp: Any, u: Array, g: GlacierDesign) -> tuple[Array, Array]:
    """w_T(u): wide upstream, narrow through the fjord, a little wider at the outlet."""
    w1, d1 = _blend(xp, u, g.width_upstream, g.width_narrow, g.narrow_at, g.narrow_length)
    w2, d2 = _blend(xp, u, 0.0, g.width_outlet - g.width_narrow, g.outlet_at, g.outlet_length)
    return w1 + w2, d1 + d2


def _tributary_path(xp: Any, u: Array, t: Tributary, g: GlacierDesign) -> tuple[Array, Array, Array, Array]:
    """Centreline f(u), f'(u), width w(u), w'(u) of a tributary.

    f = c(u) + side·slope·L·softplus((u_k − u)/L): a straight reach at slope
    ``slope`` upstream that curves into the trunk centreline c(u) downstream of
    the confluence u_k; its width blends from ``width`` to the trunk's w_T(u).
    """
    c, dc = _trunk_centre(xp, u, g)
    wt, dwt = _trunk_width(xp, u, g)
    s = (t.confluence - u) / t.bend
    m = _logistic(xp, s)  # 1 upstream, 0 downstream; dm/du = −σ'(s)/L
    dm = -_logistic_prime(xp, s) / t.bend
    f = c + t.side * t.slope * t.bend * _softplus(xp, s)
    df = dc - t.side * t.slope * m
    w = wt + (t.width - wt) * m
    dw = dwt * (1.0 - m) + (t.width - wt) * dm
    return f, df, w, dw


def _step(xp: Any, v: Array, f: Array, df: Array, w: Array, dw: Array) -> tuple[Array, Array, Array]:
    """σ(z), z = (v − f(u))/w(u), and its partials (∂/∂u, ∂/∂v).

    ∂z/∂v = 1/w,  ∂z/∂u = −(f' + z w')/w.
    """
    z = (v - f) / w
    p = _logistic_prime(xp, z)
    return _logistic(xp, z), -p * (df + z * dw) / w, p / w


def _glacier_streams(xy: Array, g: GlacierDesign) -> tuple[Array, Array, Array]:
    """ψ and its partials (∂ψ/∂u, ∂ψ/∂v) summed over background, trunk and tributaries."""
    xp = _xp(xy)
    u, v = _glacier_frame(xy, g)
    c, dc = _trunk_centre(xp, u, g)
    wt, dwt = _trunk_width(xp, u, g)
    wb, dwb = _blend(xp, u, g.background_width_upstream, g.background_width_downstream, g.background_at, g.background_length)
    terms = [(g.background_flux, c, dc, wb, dwb), (g.trunk_flux, c, dc, wt, dwt)]
    for t in g.tributaries:
        terms.append((t.flux,) + _tributary_path(xp, u, t, g))
    psi = 0.0 * u
    psi_u = 0.0 * u
    psi_v = 0.0 * u
    for flux, f, df, w, dw in terms:
        s, su, sv = _step(xp, v, f, df, w, dw)
        psi = psi + flux * s
        psi_u = psi_u + flux * su
        psi_v = psi_v + flux * sv
    return psi, psi_u, psi_v


def glacier_stream(xy: Array, g: GlacierDesign = GLACIER) -> Array:
    """Stream function ψ (m³/yr) of synthetic:glacier at EPSG:3031 metres (N, 2) -> (N,)."""
    return _glacier_streams(xy, g)[0]


def glacier_stream_gradient(xy: Array, g: GlacierDesign = GLACIER) -> Array:
    """Analytic ∇ψ = (∂ψ/∂x, ∂ψ/∂y) in m²/yr, (N, 2).

    With u = cos α·Δx + sin α·Δy and v = −sin α·Δx + cos α·Δy:
    ∂ψ/∂x = cos α ψ_u − sin α ψ_v,  ∂ψ/∂y = sin α ψ_u + cos α ψ_v.
    """
    xp = _xp(xy)
    _, pu, pv = _glacier_streams(xy, g)
    a = math.radians(g.angle_deg)
    return _stack(xp, [math.cos(a) * pu - math.sin(a) * pv, math.sin(a) * pu + math.cos(a) * pv])


def glacier_flux(xy: Array, g: GlacierDesign = GLACIER) -> Array:
    """The exact flux q = rot ψ = (∂ψ/∂y, −∂ψ/∂x) of synthetic:glacier, m²/yr, (N, 2)."""
    xp = _xp(xy)
    grad = glacier_stream_gradient(xy, g)
    return _stack(xp, [grad[..., 1], -grad[..., 0]])


def glacier_surface(xy: Array, g: GlacierDesign = GLACIER) -> Array:
    """Surface elevation s (m), smooth and analytic: ~2000 m inland falling to ~150 m at the outlet.

    s = 1075 − 825 tanh((u − 10 km)/60 km) + 180 (1 − e^(−(d/40 km)²)) − 160 e^(−(d/12 km)²),
    d = v − c(u): a plateau that falls downstream, flanks rising away from the
    trunk and a shallow trough along it.
    """
    xp = _xp(xy)
    u, v = _glacier_frame(xy, g)
    c, _ = _trunk_centre(xp, u, g)
    d = v - c
    return 1075.0 - 825.0 * xp.tanh((u - 10_000.0) / 60_000.0) + 180.0 * (1.0 - xp.exp(-((d / 40_000.0) ** 2))) - 160.0 * xp.exp(-((d / 12_000.0) ** 2))


def glacier_thickness(xy: Array, g: GlacierDesign = GLACIER) -> Array:
    """A plausible ice thickness H (m): ~2600 m inland, ~1000 m at the outlet, +700 m in the trunk trough."""
    xp = _xp(xy)
    u, v = _glacier_frame(xy, g)
    c, _ = _trunk_centre(xp, u, g)
    wt, _ = _trunk_width(xp, u, g)
    h, _ = _blend(xp, u, 2600.0, 1000.0, 40_000.0, 25_000.0)
    return h + 700.0 * xp.exp(-(((v - c) / (3.0 * wt)) ** 2))


def glacier_velocity(xy: Array, g: GlacierDesign = GLACIER) -> Array:
    """Depth-averaged velocity q / H (m/yr), (N, 2)."""
    return glacier_flux(xy, g) / glacier_thickness(xy, g)[..., None]


def glacier_truth(xy: np.ndarray) -> np.ndarray:
    """Exact synthetic:glacier flux (N, 2) in m²/yr at any array-like of points (N, 2) in metres."""
    return glacier_flux(np.asarray(xy, dtype=np.float64).reshape(-1, 2))


def glacier_surface_truth(xy: np.ndarray) -> np.ndarray:
    """Exact synthetic:glacier surface elevation (N,) in metres at points (N, 2) in metres."""
    return glacier_surface(np.asarray(xy, dtype=np.float64).reshape(-1, 2))


def _clip_line(p: np.ndarray, d: np.ndarray, bounds: tuple[float, float, float, float]) -> tuple[float, float] | None:
    """Parameter range [t0, t1] of the line p + t d inside ``bounds`` (Liang–Barsky), or None."""
    xmin, xmax, ymin, ymax = bounds
    t0, t1 = -math.inf, math.inf
    for pk, dk, lo, hi in ((p[0], d[0], xmin, xmax), (p[1], d[1], ymin, ymax)):
        if abs(dk) < 1e-12:
            if not lo <= pk <= hi:
                return None
            continue
        a, b = (lo - pk) / dk, (hi - pk) / dk
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
    return (t0, t1) if t1 > t0 else None


def glacier_flight_lines(
    n_lines: int = GLACIER_N_LINES, spacing: float = GLACIER_SPACING, bounds: tuple[float, float, float, float] = GLACIER_BOUNDS
) -> tuple[np.ndarray, np.ndarray]:
    """Survey points along straight flight lines crossing the box, and their line index.

    Line k has heading θ_k = k·137.5° (mod 180°, the golden angle, so headings
    spread evenly) and passes at signed distance p_k = 85 km·(2{0.1 + 0.618k} − 1)
    from the box centre ({·} = fractional part); points are ``spacing`` apart
    along it, starting half a spacing inside the box edge. Deterministic.
    """
    xmin, xmax, ymin, ymax = bounds
    centre = np.array([(xmin + xmax) / 2, (ymin + ymax) / 2])
    half = 0.425 * min(xmax - xmin, ymax - ymin)
    pts, ids = [], []
    for k in range(n_lines):
        theta = math.radians((k * 137.50776405) % 180.0)
        d = np.array([math.cos(theta), math.sin(theta)])
        n = np.array([-d[1], d[0]])
        p = centre + half * (2.0 * ((0.1 + 0.61803398875 * k) % 1.0) - 1.0) * n
        span = _clip_line(p, d, bounds)
        if span is None:
            continue
        t = np.arange(span[0] + spacing / 2, span[1], spacing)
        pts.append(p + t[:, None] * d)
        ids.append(np.full(t.size, k))
    return np.concatenate(pts), np.concatenate(ids)


def checkerboard_is_test(xy: np.ndarray, tile: float, origin: tuple[float, float]) -> np.ndarray:
    """True where floor((x − x0)/tile) + floor((y − y0)/tile) is even (test tiles)."""
    i = np.floor((xy[:, 0] - origin[0]) / tile).astype(np.int64)
    j = np.floor((xy[:, 1] - origin[1]) / tile).astype(np.int64)
    return (i + j) % 2 == 0


def glacier_problem(noise: float = DEFAULT_NOISE, seed: int = DEFAULT_SEED, spec: str | None = None,
                    n_lines: int = GLACIER_N_LINES, spacing: float = GLACIER_SPACING) -> FluxProblem:
    """synthetic:glacier as a :class:`FluxProblem` (surveyed by ``n_lines`` flight lines, points ``spacing``
    metres apart along them).

    Flight-line points are split by a checkerboard of 20 km tiles anchored at the
    box's lower-left corner: (i + j) even -> test, odd -> train. Train flux
    carries Gaussian noise of std ``noise × mean |q|`` over the test points;
    test flux is exact. Surface elevation is exact at every point.
    """
    spec = spec or "synthetic:glacier"
    noise = check_noise(noise, spec)
    xy, line = glacier_flight_lines(n_lines, spacing)
    is_test = checkerboard_is_test(xy, GLACIER_TILE, (GLACIER_BOUNDS[0], GLACIER_BOUNDS[2]))
    xtr, xte = xy[~is_test], xy[is_test]
    q_test = glacier_flux(xte)
    mean_q = float(np.mean(np.hypot(q_test[:, 0], q_test[:, 1])))
    q_train = add_noise(glacier_flux(xtr), noise * mean_q, seed)
    xdir = grid_points(GLACIER_BOUNDS, GLACIER_DIRECTION_N)
    return FluxProblem(
        spec=spec,
        train=FluxObservations(xy=xtr, q=q_train, s=glacier_surface(xtr), line=line[~is_test]),
        test=FluxObservations(xy=xte, q=q_test, s=glacier_surface(xte)),
        scale=GLACIER_SCALE,
        bounds=GLACIER_BOUNDS,
        direction=unit_directions(xdir, glacier_flux(xdir)),
        truth=glacier_truth,
        surface_truth=glacier_surface_truth,
        grid_shape=GLACIER_GRID_SHAPE,
        description="synthetic outlet glacier in the Byrd box: a trunk fed by 4 tributaries, narrowing through a fjord",
        notes=[
            f"{n_lines} straight flight lines, {spacing:g} m point spacing; "
            f"checkerboard of {GLACIER_TILE / 1000:g} km tiles: (i + j) even -> test, odd -> train",
            f"Gaussian noise on train: std = {noise:g} × mean |q| ({mean_q:.4g} m²/yr), seed {seed}; test flux exact",
            "direction guidance = exact unit flux on a 100 × 100 grid covering the whole box, test tiles included",
            "surface elevation is exact (analytic) at train and test points",
        ],
    )


def synthetic_problem(name: str, noise: float = DEFAULT_NOISE, seed: int = DEFAULT_SEED, spec: str | None = None) -> FluxProblem:
    """Any ``synthetic:NAME`` problem (five benchmarks or the glacier)."""
    if name == "glacier":
        return glacier_problem(noise, seed, spec)
    benchmark_field(name)  # raises DataError for unknown names
    return benchmark_problem(name, noise, seed, spec)
