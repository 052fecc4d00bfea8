"""Beat detection in raw PPG or ECG samples, built on scipy.signal.

Pure functions over arrays, plus :class:`BeatTracker`, a small stateful wrapper that runs them
over a sliding window as samples stream in (what ``serial://…&format=waveform`` uses).

- ECG: band-pass 5–20 Hz (the QRS complex), then the squared derivative smoothed over 80 ms
  (Pan–Tompkins style energy); beats are its peaks, refined to the R peak of the filtered signal.
- PPG: band-pass 0.5–8 Hz (the pulse wave); beats are the systolic peaks.

Peaks must be ≥ 0.27 s apart (220 bpm) and stand out by a fraction of the window's robust
amplitude (95th–5th percentile), so baseline wander and noise between beats are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

KINDS = ("ecg", "ppg")
MIN_BEAT_S = 60.0 / 220.0


def _check(fs: float, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"signal kind must be ecg or ppg, not {kind!r}")
    if not fs >= 50:
        raise ValueError(f"sampling rate {fs} Hz is too low for beat detection (need ≥ 50 Hz)")


_SOS: dict[tuple[float, str], np.ndarray] = {}


def bandpass_sos(fs: float, kind: str) -> np.ndarray:
    """Second-order sections of the band-pass used for ``kind`` at ``fs`` (cached)."""
    _check(fs, kind)
    key = (float(fs), kind)
    if key not in _SOS:
        lo, hi = (5.0, 20.0) if kind == "ecg" else (0.5, 8.0)
        hi = min(hi, 0.45 * fs)
        _SOS[key] = signal.butter(3, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return _SOS[key]


def beat_signal(x: np.ndarray, fs: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(filtered signal, detection signal) for ``x``: the detection signal peaks once per beat."""
    x = np.asarray(x, dtype=float)
    y = signal.sosfiltfilt(bandpass_sos(fs, kind), x - np.median(x))
    if kind == "ppg":
        return y, y
    d = np.gradient(y) ** 2
    w = max(1, int(round(0.08 * fs)))
    e = np.convolve(d, np.ones(w) / w, mode="same")
    return y, e


def detect_beats(x: np.ndarray, fs: float, kind: str = "ecg", threshold: float = 0.3) -> np.ndarray:
    """Sample indices of the beats in ``x`` (needs ≥ 2 s of signal; else none)."""
    x = np.asarray(x, dtype=float)
    if x.size < 2 * fs:
        return np.zeros(0, dtype=int)
    y, e = beat_signal(x, fs, kind)
    lo, hi = np.percentile(e, [5, 99 if kind == "ecg" else 95])
    amp = hi - lo
    if not amp > 0:
        return np.zeros(0, dtype=int)
    peaks, _ = signal.find_peaks(e, distance=max(1, int(MIN_BEAT_S * fs)), prominence=threshold * amp)
    if kind == "ecg" and peaks.size:
        # refine to the largest |filtered| sample within ±60 ms of the energy peak
        w = max(1, int(0.06 * fs))
        out = np.empty_like(peaks)
        for i, p in enumerate(peaks):
            a, b = max(0, p - w), min(len(y), p + w + 1)
            out[i] = a + int(np.argmax(np.abs(y[a:b])))
        peaks = out
    return peaks


def rr_ms(beat_times_s: np.ndarray) -> np.ndarray:
    """RR intervals (ms) between successive beat times (s)."""
    return np.diff(np.asarray(beat_times_s, dtype=float)) * 1000.0


def bpm_from_rr(rr: np.ndarray) -> float:
    """Heart rate from recent RR intervals: 60000 / median RR (robust to one missed beat)."""
    rr = np.asarray(rr, dtype=float)
    rr = rr[np.isfinite(rr) & (rr > 0)]
    return float("nan") if rr.size == 0 else 60000.0 / float(np.median(rr))


@dataclass(frozen=True, slots=True)
class Beat:
    t: float  # seconds since the first sample fed
    rr_ms: float
    bpm: float


class BeatTracker:
    """Streams samples through :func:`detect_beats` over a sliding window.

    Every ``step_s`` of new samples, the last ``window_s`` are analysed; beats older than the
    last reported one and not too close to the window's edge (``edge_s``) are reported.
    """

    def __init__(self, fs: float, kind: str = "ecg", window_s: float = 6.0, step_s: float = 1.5,
                 edge_s: float = 0.6, bpm_beats: int = 5):
        _check(fs, kind)
        self.fs, self.kind = float(fs), kind
        self.window = int(window_s * fs)
        self.step = max(1, int(step_s * fs))
        self.edge = int(edge_s * fs)
        self.buf = np.zeros(0)
        self.start = 0  # absolute index of buf[0]
        self.pending = 0
        self.last_beat = -1  # absolute index of the last reported beat
        self.recent: list[float] = []
        self.bpm_beats = bpm_beats

    def push(self, samples) -> list[Beat]:
        x = np.asarray(samples, dtype=float).ravel()
        self.buf = np.concatenate([self.buf, x])
        self.pending += x.size
        out: list[Beat] = []
        if self.pending < self.step:
            return out
        self.pending = 0
        if self.buf.size > self.window:
            cut = self.buf.size - self.window
            self.buf = self.buf[cut:]
            self.start += cut
        peaks = detect_beats(self.buf, self.fs, self.kind)
        limit = self.buf.size - self.edge
        min_gap = int(MIN_BEAT_S * self.fs)
        for p in peaks:
            if p >= limit:
                break
            a = self.start + int(p)
            if a <= self.last_beat + min_gap:
                continue
            if self.last_beat >= 0:
                rr = (a - self.last_beat) * 1000.0 / self.fs
                if rr <= 3000.0:
                    self.recent = (self.recent + [rr])[-self.bpm_beats:]
                    out.append(Beat(a / self.fs, rr, bpm_from_rr(np.array(self.recent))))
                else:
                    self.recent = []
            self.last_beat = a
        return out
