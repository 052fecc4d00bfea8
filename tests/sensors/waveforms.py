"""Synthetic ECG and PPG with a known heart rate, for the waveform path's tests and benchmark.

ECG: each beat a sum of Gaussian waves (P, Q, R, S, T); PPG: a systolic wave and a smaller
diastolic one. Both with respiratory sinus arrhythmia, baseline wander, white noise and (ECG)
50 Hz mains, so the detector meets what it meets on a bench.
"""

from __future__ import annotations

import numpy as np

ECG_WAVES = [  # (offset s from R, width s, amplitude mV)
    (-0.20, 0.025, 0.12), (-0.03, 0.010, -0.12), (0.0, 0.012, 1.0), (0.03, 0.010, -0.25), (0.25, 0.045, 0.30),
]
PPG_WAVES = [(0.18, 0.07, 1.0), (0.42, 0.09, 0.35)]


def beat_times(bpm: float, duration_s: float, rng: np.random.Generator, rsa: float = 0.03) -> np.ndarray:
    t, out = 0.5, []
    while t < duration_s:
        out.append(t)
        rr = 60.0 / bpm * (1 + rsa * np.sin(2 * np.pi * t / 4.0)) + rng.normal(0, 0.005)
        t += rr
    return np.array(out)


def synthetic(kind: str, bpm: float, duration_s: float, fs: float = 250.0, seed: int = 0,
              noise: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """(samples, beat times in s) of a synthetic ``kind`` ('ecg' or 'ppg') at ``bpm``."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * fs)
    t = np.arange(n) / fs
    x = np.zeros(n)
    beats = beat_times(bpm, duration_s, rng)
    waves = ECG_WAVES if kind == "ecg" else PPG_WAVES
    for b in beats:
        a, z = max(0, int((b - 0.4) * fs)), min(n, int((b + 0.8) * fs))
        seg = t[a:z]
        for off, w, amp in waves:
            x[a:z] += amp * np.exp(-0.5 * ((seg - b - off) / w) ** 2)
    x += 0.15 * np.sin(2 * np.pi * 0.25 * t + 1.0)  # breathing / baseline wander
    x += rng.normal(0, noise, n)
    if kind == "ecg":
        x += 0.02 * np.sin(2 * np.pi * 50.0 * t)
    return x, beats
