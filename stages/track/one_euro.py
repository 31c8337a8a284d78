"""The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012): a low-pass filter whose cutoff rises with the
signal's speed, so still faces lose their jitter while fast motions (a blink, a jaw drop) keep little lag."""

from __future__ import annotations

import math

import numpy as np

D_CUTOFF = 1.0  # Hz: cutoff of the derivative estimate, the value the paper recommends


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with this cutoff frequency at time step dt."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


def one_euro(x: np.ndarray, fps: float, min_cutoff: float = 1.0, beta: float = 0.5,
             d_cutoff: float = D_CUTOFF) -> np.ndarray:
    """Filter a (T, ...) sequence sampled at `fps`, every channel independently. `min_cutoff` (Hz) sets the
    smoothing of slow motion (lower = smoother), `beta` how fast the cutoff opens with speed (higher = less lag).
    Causal: frame t depends only on frames <= t."""
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return x.astype(np.float32)
    dt = 1.0 / fps
    out = np.empty_like(x)
    out[0] = x[0]
    dx = np.zeros_like(x[0])
    a_d = _alpha(d_cutoff, dt)
    for t in range(1, len(x)):
        dx = a_d * (x[t] - out[t - 1]) / dt + (1.0 - a_d) * dx
        a = _alpha(min_cutoff + beta * np.abs(dx), dt)
        out[t] = a * x[t] + (1.0 - a) * out[t - 1]
    return out.astype(np.float32)
