"""Scene parameters → the effective intensity a patient feels, with per-patient weights.

A hierarchy file (``scenes/``) names each level's scene parameters. The patient does not feel
the hierarchy's intensity axis but a weighted mix of what the scene shows; each patient weighs
the features a little differently, so a fixed hierarchy is mis-ordered for some of them.
Heights saturate with height (Wuehr 2019: anxiety stops rising above ~40 m).

The scene parameters at an intensity come from the hierarchy itself (``params_at`` of a
:class:`policy.step.SceneTable`, which the engine fills with ``scenes.hierarchy.Hierarchy``), so
the live session and the evaluator feed the model the same numbers from one implementation.
"""

from __future__ import annotations

import numpy as np


def _unit(v):
    """``v`` clipped to [0, 1]: np.clip's result without its Python-level checks (the effective
    intensity is recomputed every simulated second for the patients whose intensity moved)."""
    return np.minimum(np.maximum(v, 0.0), 1.0)


#: per scene: (parameter, transform to [0, 1] felt intensity, default weight)
FEATURES: dict[str, tuple[tuple[str, object, float], ...]] = {
    "heights": (
        ("height_m", lambda v: 1.0 - np.exp(-np.maximum(v, 0.0) / 10.0), 0.50),
        ("edge_distance_m", lambda v: 1.0 - _unit(v / 4.0), 0.20),
        ("railing", lambda v: 1.0 - _unit(v), 0.10),
        ("floor_transparency", lambda v: _unit(v), 0.15),
        ("wind", lambda v: _unit(v), 0.05),
    ),
    # minor features (wind, walking speed, noise) may calm or distract some patients: their
    # weights are signed (assumed); with the saturation of height this mis-orders the top levels
    # of a fixed hierarchy for some patients
    "crowds": (
        ("people", lambda v: 1.0 - np.exp(-np.maximum(v, 0.0) / 25.0), 0.35),
        ("closest_m", lambda v: 1.0 - _unit(v / 12.0), 0.30),
        ("looking_share", lambda v: _unit(v / 0.8), 0.20),
        ("walk_speed", lambda v: _unit(v - 0.8), 0.05),
        ("noise", lambda v: _unit(v), 0.10),
    ),
}


MINOR = ("wind", "walk_speed", "noise")
MINOR_SD = 0.15


def scene_weights(scene: str, z: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per-patient weights (L, F): main features w0·exp(sigma·z) (positive), minor ones
    w0 + 0.15·z (signed, at least −0.1); scaled so the positive weights sum to 1."""
    w0 = np.array([f[2] for f in FEATURES[scene]])
    minor = np.array([f[0] in MINOR for f in FEATURES[scene]])
    main = w0[None, :] * np.exp(np.asarray(sigma)[:, None] * z)
    w = np.where(minor[None, :], np.maximum(w0[None, :] + MINOR_SD * z, -0.1), main)
    return w / np.maximum(w, 0.0).sum(axis=1, keepdims=True)


def felt(scene: str, params: dict, weights: np.ndarray) -> np.ndarray:
    """Effective intensity (L,) from scene parameters (name → value or array over L)."""
    u = 0.0
    for j, (name, fn, _) in enumerate(FEATURES[scene]):
        u = u + weights[:, j] * fn(np.asarray(params[name], dtype=float))
    return _unit(u)
