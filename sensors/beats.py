"""Beat detection in raw ECG or PPG samples, built on scipy.signal.

Pure functions over one window of samples, plus :class:`BeatTracker`, which runs them over a
sliding window as samples stream in (what ``serial://…&format=waveform`` uses).

ECG — QRS detection after Pan & Tompkins (1985, IEEE TBME 32:230) with the decision rules of
Hamilton & Tompkins (1986, IEEE TBME 33:1157):

- band-pass 5–30 Hz (zero phase), then the *absolute* slope averaged over 120 ms. Unlike the
  squared slope, this does not favour narrow QRS: a wide ventricular beat has slopes as long
  as it is wide, so its averaged slope is as high as a normal beat's.
- candidates are peaks of that signal ≥ 200 ms apart (refractory period); a candidate is a QRS
  when it exceeds ``NPK + 0.25·(SPK − NPK)``, the medians of the last 8 QRS and noise peaks; one
  within 360 ms of the last QRS whose maximal slope is under half of that QRS's is
  a T wave; when no QRS comes for 1.66 × the mean RR, the largest candidate in the gap above
  half the threshold is taken (search-back), which is what finds a beat the threshold missed.
- the beat is placed at the largest |band-passed| sample within ±40 ms of the slope peak.

PPG — systolic peaks by Elgendi's two moving averages (Elgendi et al. 2013, PLoS ONE 8:e76585):
band-pass 0.5–8 Hz, keep the positive part squared, a 111 ms (peak) and a 667 ms (beat) moving
average; blocks where the first exceeds the second plus 2 % of the mean are systolic waves when
at least 111 ms wide; the beat is the block's maximum, beats ≥ 300 ms apart. The dicrotic wave
is smaller and shorter than the beat average, so it does not open a block of its own.

Signal quality (both kinds), after Orphanidou et al. (2015, IEEE JBHI 19:832): a window is a
pulse (or an ECG) only when it has no flat stretch (a sensor at a rail or reading nothing: no
finger, lead off), at least three beats and a heart rate in 30–220 bpm and, for PPG, pulses that
correlate with their average pulse (median r ≥ 0.86). Orphanidou's mean correlation and
longest/shortest interval ratio (< 2.2) are left out: ectopic beats break both in a clean signal,
and telling them apart is the features' job. A gap over 3 s between beats only breaks the chain
of intervals. Otherwise the window yields no beats and the tracker reports why.

Why not neurokit2 at run time: its detectors (and its Kubios-style ``signal_fixpeaks``) work on a
whole recording with pandas around them, import about 1 s of scientific stack, and their
thresholds see the future; a live session needs beats every fraction of a second from a sliding
window with a bounded delay, importing numpy and scipy only. neurokit2 and wfdb are the
*references* these detectors are scored against (tests/sensors/beat_reference.py, docs/beats.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

import numpy as np
from scipy import signal
from scipy.ndimage import uniform_filter1d

KINDS = ("ecg", "ppg")
MIN_BEAT_S = 60.0 / 220.0
MIN_BPM, MAX_BPM = 30.0, 220.0
MAX_GAP_S = 3.0
PPG_TEMPLATE_R = 0.86  # Orphanidou et al. 2015: correlation of PPG pulses with their average pulse
FLAT_S = 0.5  # this long without any change of the raw samples: no contact, or a rail


def _check(fs: float, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"signal kind must be ecg or ppg, not {kind!r}")
    if not fs >= 50:
        raise ValueError(f"sampling rate {fs} Hz is too low for beat detection (need ≥ 50 Hz)")


_SOS: dict[tuple[float, str], tuple[np.ndarray, np.ndarray]] = {}


def _filter(fs: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    _check(fs, kind)
    key = (float(fs), kind)
    if key not in _SOS:
        lo, hi = (5.0, 30.0) if kind == "ecg" else (0.5, 8.0)
        hi = min(hi, 0.45 * fs)
        sos = signal.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")
        _SOS[key] = sos, signal.sosfilt_zi(sos)
    return _SOS[key]


def bandpass_sos(fs: float, kind: str) -> np.ndarray:
    """Second-order sections of the band-pass used for ``kind`` at ``fs`` (cached)."""
    return _filter(fs, kind)[0]


def _filtfilt(x: np.ndarray, fs: float, kind: str) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(sos, x)`` (odd padding, same pad length), with the filter's initial
    state computed once per rate instead of once per window."""
    sos, zi = _filter(fs, kind)
    pad = 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum())))
    if x.size <= pad:
        return signal.sosfiltfilt(sos, x)
    ext = np.concatenate([2 * x[0] - x[pad:0:-1], x, 2 * x[-1] - x[-2:-pad - 2:-1]])
    y, _ = signal.sosfilt(sos, ext, zi=zi * ext[0])
    y, _ = signal.sosfilt(sos, y[::-1], zi=zi * y[-1])
    return y[::-1][pad:-pad]


def _movavg(x: np.ndarray, n: int) -> np.ndarray:
    return uniform_filter1d(x, max(1, int(n)), mode="nearest")


def beat_signal(x: np.ndarray, fs: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(filtered signal, detection signal) for ``x``: the detection signal peaks once per beat."""
    x = np.asarray(x, dtype=float)
    y = _filtfilt(x - x[0], fs, kind)  # (a constant offset does not change a band-pass; x[0] keeps floats small)
    if kind == "ecg":
        return y, _movavg(np.abs(np.gradient(y)), round(0.12 * fs))
    z = np.maximum(y, 0.0) ** 2
    return y, _movavg(z, round(0.111 * fs))


def _ecg_peaks(y: np.ndarray, e: np.ndarray, fs: float) -> np.ndarray:
    cand_a, _ = signal.find_peaks(e, distance=max(1, int(0.2 * fs)))
    if cand_a.size < 2:
        return np.zeros(0, dtype=int)
    h_a = e[cand_a]
    slope = np.abs(np.gradient(y))
    w = max(1, int(0.06 * fs))
    smax = [float(slope[max(0, c - w):c + w + 1].max()) for c in cand_a]
    # Signal and noise peak levels: medians of the last 8 QRS and noise peaks (Hamilton & Tompkins),
    # so one artefact does not lift the threshold for long; seeded with the window's highest
    # candidates, as many as beats at 40 bpm (there are at least that many), and half the mean of the
    # detection signal (Pan & Tompkins' learning phase). Plain Python below: ~40 candidates a window.
    k = max(2, int(len(e) / fs / 1.5))
    sig = sorted(h_a.tolist(), reverse=True)[:min(k, 8)]
    noise = [0.5 * float(np.mean(e))]
    cand, h = cand_a.tolist(), h_a.tolist()
    t_wave, min_beat = 0.36 * fs, MIN_BEAT_S * fs

    def level(buf: list, v: float) -> None:
        buf.append(v)
        del buf[:-8]

    beats: list[int] = []  # indices into cand
    rr_avg = None
    for i in range(len(cand)):
        th = median(noise) + 0.25 * (median(sig) - median(noise))
        if beats:
            last = beats[-1]
            gap = cand[i] - cand[last]
            # search-back: a gap of 1.66 mean RR before this candidate hides a missed beat
            if rr_avg is not None and gap > 1.66 * rr_avg:
                between = [j for j in range(last + 1, i)
                           if min(cand[j] - cand[last], cand[i] - cand[j]) > min_beat and h[j] > 0.5 * th]
                if between:
                    j = max(between, key=h.__getitem__)
                    beats.append(j)
                    level(sig, h[j])
            last = beats[-1]
            gap = cand[i] - cand[last]
            if h[i] > th and gap < t_wave and smax[i] < 0.5 * smax[last]:
                level(noise, h[i])  # a T wave
                continue
        if h[i] > th and beats and cand[i] - cand[beats[-1]] < min_beat:
            if h[i] > h[beats[-1]]:  # two "beats" closer than 220 bpm allows: the larger is the beat
                beats[-1] = i
            continue
        if h[i] > th:
            if beats:
                rr = cand[i] - cand[beats[-1]]
                rr_avg = rr if rr_avg is None else 0.875 * rr_avg + 0.125 * rr
            beats.append(i)
            level(sig, h[i])
        else:
            level(noise, h[i])
    beats.sort()
    cand = cand_a
    peaks = cand[np.array(beats, dtype=int)]
    # place each beat at the largest |band-passed| sample within ±40 ms
    r = max(1, int(0.04 * fs))
    out = np.array([max(0, p - r) + int(np.argmax(np.abs(y[max(0, p - r):p + r + 1]))) for p in peaks], dtype=int)
    return np.unique(out)


def _ppg_peaks(y: np.ndarray, ma_peak: np.ndarray, fs: float) -> np.ndarray:
    z = np.maximum(y, 0.0) ** 2
    ma_beat = _movavg(z, round(0.667 * fs))
    above = ma_peak > ma_beat + 0.02 * float(np.mean(z))
    edges = np.flatnonzero(np.diff(np.r_[0, above.astype(np.int8), 0]))
    starts, ends = edges[0::2], edges[1::2]
    w1 = round(0.111 * fs)
    peaks = [a + int(np.argmax(y[a:b])) for a, b in zip(starts, ends, strict=True) if b - a >= w1]
    out: list[int] = []
    for p in peaks:  # beats ≥ 300 ms apart: of two closer ones keep the higher
        if out and p - out[-1] < 0.3 * fs:
            if y[p] > y[out[-1]]:
                out[-1] = p
            continue
        out.append(p)
    return np.array(out, dtype=int)


def _detect(x: np.ndarray, fs: float, kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.asarray(x, dtype=float)
    if x.size < 2 * fs or not np.ptp(x) > 0:
        return np.zeros(0, dtype=int), None
    y, e = beat_signal(x, fs, kind)
    return (_ecg_peaks(y, e, fs) if kind == "ecg" else _ppg_peaks(y, e, fs)), y


def detect_beats(x: np.ndarray, fs: float, kind: str = "ecg") -> np.ndarray:
    """Sample indices of the beats in ``x`` (needs ≥ 2 s of signal; else none). No quality check."""
    return _detect(x, fs, kind)[0]


def longest_flat(x: np.ndarray) -> int:
    """Length of the longest run of identical successive samples."""
    x = np.asarray(x)
    if x.size < 2:
        return int(x.size)
    change = np.flatnonzero(np.diff(x) != 0)
    bounds = np.r_[-1, change, x.size - 1]
    return int(np.max(np.diff(bounds)))


def window_quality(x: np.ndarray, peaks: np.ndarray, fs: float, kind: str, y: np.ndarray | None = None) -> str:
    """Why the beats of this window cannot be trusted ("" when they can): see the module's doc.
    ``y``: the window's band-passed signal, if already computed."""
    x = np.asarray(x, dtype=float)
    if longest_flat(x) >= FLAT_S * fs:
        return "flat"
    if peaks.size < 3:
        return "no-beats"
    rr = np.diff(peaks) / fs
    if rr.max() > MAX_GAP_S:
        return "gap"
    bpm = 60.0 / float(np.median(rr))
    if not MIN_BPM <= bpm <= MAX_BPM:
        return "rate"
    if kind == "ppg":
        if y is None:
            y, _ = beat_signal(x, fs, kind)
        m = float(np.median(rr))
        a, b = int(round(0.3 * m * fs)), int(round(0.7 * m * fs))
        segs = np.array([y[p - a:p + b] for p in peaks if p - a >= 0 and p + b <= y.size])
        if len(segs) < 2:
            return "no-beats"
        tmpl = segs.mean(axis=0)
        r = [np.corrcoef(s, tmpl)[0, 1] if np.std(s) > 0 else 0.0 for s in segs]
        if not float(np.median(r)) >= PPG_TEMPLATE_R:
            return "shape"
    return ""


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

    Every ``step_s`` of new samples, the last ``window_s`` are analysed; beats newer than the last
    reported one and at least ``edge_s`` from the window's end are reported. A beat is therefore
    reported between ``edge_s`` and ``edge_s + step_s`` after it happened (1.0–1.5 s by default).
    The edge lets the ECG search-back see the beat after a gap, and keeps the zero-phase filters'
    end effects out of what is reported.

    A window whose quality check fails (:func:`window_quality`) reports no beats; ``status`` then
    holds the reason (``""`` while beats are trusted), no beat up to ``bad_until`` (the window's
    end less the edge) is reported later, and the next trusted beat starts a new chain (no interval
    is reported across a stretch without a trusted signal).
    """

    def __init__(self, fs: float, kind: str = "ecg", window_s: float = 8.0, step_s: float = 0.5,
                 edge_s: float = 1.0, bpm_beats: int = 5):
        _check(fs, kind)
        self.fs, self.kind = float(fs), kind
        self.window = int(window_s * fs)
        self.step = max(1, int(step_s * fs))
        self.edge = int(edge_s * fs)
        self.buf = np.zeros(self.window)
        self.n = 0  # samples fed so far (absolute index of the next one)
        self.pending = 0
        self.last_beat = -(10 ** 9)  # absolute index of the last beat taken (reported or starting a chain)
        self.chain = False  # False: the next beat starts a new chain (no interval reported up to it)
        self.recent: list[float] = []
        self.bpm_beats = bpm_beats
        self.status = "starting"  # "" while beats are trusted, else why not (see window_quality)
        self.analyses = 0  # windows analysed so far
        self.bad_until = -1  # absolute index up to which the last failed window was judged

    def push(self, samples) -> list[Beat]:
        x = np.asarray(samples, dtype=float).ravel()
        out: list[Beat] = []
        while x.size:
            take = min(x.size, self.step - self.pending)
            self._append(x[:take])
            x = x[take:]
            self.pending += take
            if self.pending >= self.step:
                self.pending = 0
                out.extend(self._analyse())
        return out

    def _append(self, x: np.ndarray) -> None:
        k = x.size
        if k >= self.window:
            self.buf[:] = x[-self.window:]
        else:
            self.buf[:-k] = self.buf[k:]
            self.buf[-k:] = x
        self.n += k

    def _analyse(self) -> list[Beat]:
        have = min(self.n, self.window)
        if have < self.window // 2:
            return []
        win = self.buf[-have:]
        start = self.n - have  # absolute index of win[0]
        peaks, y = _detect(win, self.fs, self.kind)
        # the zero-phase filters' ends can make a half pulse at either end of the window look like a beat:
        # judge the window on the beats away from its ends (those at the start were taken by earlier windows)
        lead = int(0.5 * self.fs)
        peaks = peaks[peaks >= lead]
        why = window_quality(win, peaks[peaks < have - self.edge], self.fs, self.kind, y)
        self.analyses += 1
        if why == "gap":  # beats on both sides of a pause: only the pause is suspect (no RR spans it)
            judged = peaks[peaks < have - self.edge]
            k = int(np.argmax(np.diff(judged)))
            self.bad_until = max(self.bad_until, start + int(judged[k + 1]) - 1)
        elif why:
            self.status = why
            self.chain = False
            self.recent = []
            self.bad_until = self.n - self.edge
            return []
        self.status = ""
        out: list[Beat] = []
        limit = have - self.edge
        min_gap = int(MIN_BEAT_S * self.fs)
        for p in peaks:
            if p >= limit:
                break
            a = start + int(p)
            if a <= self.last_beat + min_gap or a <= self.bad_until:
                continue
            rr = (a - self.last_beat) * 1000.0 / self.fs
            if self.chain and rr <= MAX_GAP_S * 1000.0:
                self.recent = (self.recent + [rr])[-self.bpm_beats:]
                out.append(Beat(a / self.fs, rr, bpm_from_rr(np.array(self.recent))))
            else:
                self.recent = []
            self.chain = True
            self.last_beat = a
        return out
