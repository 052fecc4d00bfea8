"""Counter-based random numbers: the same draws for a patient whatever else is simulated.

Every draw is a pure function of (patient key, session, second, channel), so the ``sim://``
source (one patient), the gymnasium env and the evaluator (thousands at once, several
controllers side by side) give each patient exactly the same noise: common random numbers
for a fair comparison of controllers, and identical trajectories across the three shells.
The mixer is SplitMix64's finaliser on uint64 (wrapping arithmetic), compiled once (:func:`mix`) and used
by Python, numpy arrays and the compiled kernels alike.
"""

from __future__ import annotations

import numba
import numpy as np

_M64 = (1 << 64) - 1
_G = 0x9E3779B97F4A7C15


def _mix_int(x: int) -> int:
    """:func:`mix` of a Python int (taken modulo 2**64)."""
    return int(mix(np.uint64(x & _M64)))


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over a uint64 array (:func:`mix` per element)."""
    x = np.asarray(x, dtype=np.uint64)
    out = np.empty(x.shape, np.uint64)
    _mix_lanes(x.reshape(-1), out.reshape(-1))
    return out


def patient_keys(seed: int, index: np.ndarray | int) -> np.ndarray:
    """Keys of patients ``index`` of the population drawn with ``seed`` (uint64 array)."""
    idx = np.atleast_1d(np.asarray(index, dtype=np.int64)).astype(np.uint64)
    base = _mix_int(_mix_int(int(seed) * _G + 0x5EED))
    return _mix((idx * np.uint64(_G)) ^ np.uint64(base))


def counter(*parts: int) -> np.uint64:
    """The counter of a draw (e.g. session, second, channel): mixed with a patient's key, it gives the draw."""
    return _counter_of(np.array([int(p) & _M64 for p in parts], dtype=np.uint64))


_counter = counter


# numba caches a compiled function per file and does not notice when a function it calls from another
# file changes: after changing a compiled function here, delete policy/sim/patient/__pycache__/*.nb[ic]
# (a fresh checkout, as in CI, compiles everything anew).
@numba.njit(cache=True)
def mix(x):
    """SplitMix64's finaliser of one uint64: the one implementation, for arrays (:func:`_mix`) and kernels."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@numba.njit(cache=True)
def _mix_lanes(x, out):
    for i in range(len(x)):
        out[i] = mix(x[i])


@numba.njit(cache=True)
def _counter_of(parts):
    """:func:`counter` of an array of parts: the one implementation, for Python and kernels."""
    h = np.uint64(0x243F6A8885A308D3)
    for part in parts:
        h = mix(h ^ (part * np.uint64(_G)))
    return h


@numba.njit(cache=True)
def counter4(a, b, c, d):
    """:func:`counter` of four non-negative parts, for compiled kernels."""
    parts = np.empty(4, np.uint64)
    parts[0], parts[1], parts[2], parts[3] = a, b, c, d
    return _counter_of(parts)


@numba.njit(cache=True)
def to_unit(h):
    """A mixed uint64 as a uniform in (0, 1), as :func:`uniform` makes it."""
    return (np.float64(h >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


def uniform(keys: np.ndarray, *counter: int) -> np.ndarray:
    """Uniform draws in (0, 1), one per key, for the given counter (e.g. session, second, channel)."""
    h = _mix(keys ^ _counter(*counter))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def normal(keys: np.ndarray, *counter: int) -> np.ndarray:
    """Standard normal draws (Box–Muller on two uniforms)."""
    u1 = uniform(keys, *counter, 1)
    u2 = uniform(keys, *counter, 2)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)


def uniform_block(keys: np.ndarray, n: int, *counter: int) -> np.ndarray:
    """(n, len(keys)) uniforms in (0, 1): row j is ``uniform(keys, *counter, j)``, in one pass."""
    c = np.array([_counter(*counter, j) for j in range(n)], dtype=np.uint64)
    h = _mix(c[:, None] ^ keys[None, :])
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)
