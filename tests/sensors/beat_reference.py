"""Reference beats for the real recordings in ``tests/fixtures/`` and the scores against them.

References come from detectors no one here wrote, run offline on the whole recording:

- ECG: wfdb's XQRS (``wfdb.processing.xqrs_detect``) and neurokit2's ``neurokit``, ``pantompkins1985``,
  ``christov2004`` and ``zong2003`` QRS detectors (``nk.ecg_findpeaks`` on ``nk.ecg_clean`` output). Not
  ``hamilton2002``, ``engzeemod2012`` or ``kalidas2017``: on MIT-BIH 208 they, and XQRS, miss most of the
  wide ventricular beats (a majority including three of them would call real PVCs "no beat"; see docs/beats.md);
- PPG: neurokit2's ``elgendi`` (Elgendi 2013), ``bishop`` (MSPTD, Bishop & Ercole 2018) and ``charlton``
  (MSPTDfast, Charlton 2024) systolic-peak detectors (``nk.ppg_findpeaks`` on ``nk.ppg_clean`` output).

A beat counts as reference where most of them agree: each detector's systematic lag (its median offset
from the second detector's beats: neurokit2's ``neurokit`` for ECG, ``bishop`` for PPG; Pan–Tompkins marks
late) is removed, detections of the different detectors within ``CLUSTER_S`` of one another are grouped,
and a group found by more than half of the detectors is a reference beat at the group's median time.

``python -m tests.sensors.beat_reference`` writes them to ``tests/fixtures/<record>.ref.npz`` (``--table``
prints the tables of docs/beats.md instead); the tests read those (no neurokit2 or wfdb needed to run
them) and ``test_beats_real.py::test_committed_references_match_the_libraries`` recomputes them when both
are installed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

#: record → (kind, stretches (s) without a finger on the sensor or with the finger being placed, where no
#: beat may be reported and none is scored: judged from the raw trace, see tests/fixtures/README.md)
RECORDS = {
    "ecg_mitdb208": ("ecg", ()),
    "ecg_bitalino": ("ecg", ()),
    "ppg_heartpy1": ("ppg", ()),
    "ppg_heartpy2": ("ppg", ((0.0, 28.0),)),
}
ECG_METHODS = ("xqrs", "neurokit", "pantompkins1985", "christov2004", "zong2003")
PPG_METHODS = ("elgendi", "bishop", "charlton")
CLUSTER_S = 0.10  # detections of one beat by different detectors lie within this of one another
MATCH_S = 0.15  # a detected beat matches a reference beat within this (ANSI/AAMI EC57 uses 150 ms)


def load(record: str) -> tuple[np.ndarray, float]:
    with np.load(FIXTURES / f"{record}.npz") as f:
        return f["x"], float(f["fs"])


def run_reference(x: np.ndarray, fs: float, kind: str, method: str) -> np.ndarray:
    """Beat sample indices of one reference detector on the whole recording."""
    import neurokit2 as nk

    x = np.asarray(x, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "xqrs":
            import wfdb.processing

            return np.asarray(wfdb.processing.xqrs_detect(x, fs=fs, verbose=False), dtype=int)
        if kind == "ecg":
            clean = nk.ecg_clean(x, sampling_rate=int(round(fs)), method=method)
            out = nk.ecg_findpeaks(clean, sampling_rate=int(round(fs)), method=method)["ECG_R_Peaks"]
        else:
            clean = nk.ppg_clean(x, sampling_rate=int(round(fs)))
            out = nk.ppg_findpeaks(clean, sampling_rate=int(round(fs)), method=method)["PPG_Peaks"]
    return np.asarray(out, dtype=int)


def _lag(d: np.ndarray, anchor: np.ndarray, fs: float) -> int:
    """Median offset (samples) of ``d`` from the nearest ``anchor`` beat, over pairs within 0.2 s."""
    if not d.size or not anchor.size:
        return 0
    j = np.clip(np.searchsorted(anchor, d), 1, anchor.size - 1)
    near = np.where(np.abs(anchor[j - 1] - d) < np.abs(anchor[j] - d), anchor[j - 1], anchor[j])
    off = (d - near)[np.abs(d - near) < 0.2 * fs]
    return int(np.median(off)) if off.size else 0


def consensus(detections: list[np.ndarray], fs: float, cluster_s: float = CLUSTER_S) -> np.ndarray:
    """Beats (sample indices) found by more than half of ``detections`` within ``cluster_s``, after
    removing each detector's median lag from the second detector's beats."""
    anchor = np.sort(detections[1]) if len(detections) > 1 else np.sort(detections[0])
    shifted = [np.asarray(d) - _lag(np.sort(d), anchor, fs) for d in detections]
    pts = sorted((int(p), k) for k, d in enumerate(shifted) for p in d)
    out, group = [], []
    need = len(detections) // 2 + 1

    def close() -> None:
        if len({k for _, k in group}) >= need:
            out.append(int(np.median([p for p, _ in group])))

    for p, k in pts:
        if group and p - group[0][0] > cluster_s * fs:
            close()
            group = []
        group.append((p, k))
    if group:
        close()
    return np.array(out, dtype=int)


def reference(record: str, recompute: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(consensus beats, each method's beats) for ``record``, from the committed file unless ``recompute``."""
    kind = RECORDS[record][0]
    path = FIXTURES / f"{record}.ref.npz"
    if not recompute:
        with np.load(path) as f:
            return f["consensus"], {k[4:]: f[k] for k in f.files if k.startswith("det_")}
    x, fs = load(record)
    methods = ECG_METHODS if kind == "ecg" else PPG_METHODS
    dets = {m: run_reference(x, fs, kind, m) for m in methods}
    return consensus(list(dets.values()), fs), dets


@dataclass(frozen=True)
class Score:
    n_ref: int
    n_det: int
    tp: int
    sensitivity: float
    ppv: float
    rr_err_ms: tuple[float, float]  # median, p95 of |RR − reference RR| over matched successive pairs
    bpm_err: tuple[float, float]  # median, p95 of |reported bpm − reference bpm| (see :func:`score`)
    in_no_contact: int  # beats reported inside a no-contact stretch


def _outside(t: np.ndarray, stretches) -> np.ndarray:
    keep = np.ones(t.size, dtype=bool)
    for a, b in stretches:
        keep &= ~((t >= a) & (t < b))
    return keep


def score(det_s: np.ndarray, ref_s: np.ndarray, stretches=(), span: tuple[float, float] | None = None,
          det_bpm: np.ndarray | None = None, match_s: float = MATCH_S) -> Score:
    """Score detected beat times against reference beat times (both in seconds).

    Only beats inside ``span`` (default: the reference's first to last beat) and outside the
    ``stretches`` are scored; beats reported inside the stretches are counted apart. ``det_bpm``
    (the bpm reported with each detected beat): its error is taken against 60000 / the median of the
    reference's last 5 intervals up to the matched beat, the rule the tracker reports bpm by;
    without it, the bpm error is that of each interval (60000 / RR against 60000 / reference RR).
    """
    order = np.argsort(np.asarray(det_s, float))
    det_s, ref_all = np.asarray(det_s, float)[order], np.sort(np.asarray(ref_s, float))
    bpm_all = None if det_bpm is None else np.asarray(det_bpm, float)[order]
    in_nc = int((~_outside(det_s, stretches)).sum())
    lo, hi = span if span is not None else (ref_all[0] - match_s, ref_all[-1] + match_s)
    keep = _outside(det_s, stretches) & (det_s >= lo) & (det_s <= hi)
    det = det_s[keep]
    rkeep = _outside(ref_all, stretches) & (ref_all >= lo) & (ref_all <= hi)
    ref = ref_all[rkeep]
    # greedy one-to-one matching in time order
    match = np.full(ref.size, -1)
    used = np.zeros(det.size, dtype=bool)
    j = 0
    for i, r in enumerate(ref):
        while j < det.size and det[j] < r - match_s:
            j += 1
        k = j
        best = -1
        while k < det.size and det[k] <= r + match_s:
            if not used[k] and (best < 0 or abs(det[k] - r) < abs(det[best] - r)):
                best = k
            k += 1
        if best >= 0:
            used[best] = True
            match[i] = best
    tp = int((match >= 0).sum())
    # RR error over pairs of successive reference beats both matched to successive detections
    ok = (match[:-1] >= 0) & (match[1:] >= 0) & (match[1:] - match[:-1] == 1)
    rr_ref = np.diff(ref)[ok] * 1000
    rr_det = (det[match[1:][ok]] - det[match[:-1][ok]]) * 1000
    e = np.abs(rr_det - rr_ref)
    if bpm_all is None:
        b = np.abs(60000 / rr_det - 60000 / rr_ref) if rr_ref.size else np.zeros(0)
    else:
        bpm = bpm_all[keep]
        ridx = np.flatnonzero(rkeep)  # positions in the whole reference
        pairs = [(bpm[match[i]], 60000.0 / np.median(np.diff(ref_all[ridx[i] - 5:ridx[i] + 1]) * 1000))
                 for i in range(ref.size) if match[i] >= 0 and ridx[i] >= 5 and np.isfinite(bpm[match[i]])]
        b = np.array([abs(a - r) for a, r in pairs])
    q = lambda v: (float(np.median(v)), float(np.percentile(v, 95))) if v.size else (np.nan, np.nan)  # noqa: E731
    return Score(ref.size, det.size, tp, tp / max(ref.size, 1), tp / max(det.size, 1), q(e), q(b), in_nc)


def reference_hr(ref_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(times, HR) of the reference beats as an NN-based heart rate: at each beat, 60 / the mean of the
    last 5 reference intervals within 20 % of the median of their 9 neighbours (normal-to-normal)."""
    t = np.sort(np.asarray(ref_s, float))
    rr = np.diff(t)
    med = np.array([np.median(rr[max(0, i - 4):i + 5]) for i in range(rr.size)])
    normal = np.abs(rr / med - 1) <= 0.2
    hr = np.full(rr.size, np.nan)
    for i in range(rr.size):
        nn = rr[max(0, i - 30):i + 1][normal[max(0, i - 30):i + 1]][-5:]
        if nn.size == 5:
            hr[i] = 60.0 / float(np.mean(nn))
    return t[1:], hr


def hr_error(t: float, hr: float, ref_t: np.ndarray, ref_hr: np.ndarray) -> float:
    """|session HR − reference HR| at time ``t`` (the reference at its last beat up to ``t`` + MATCH_S)."""
    k = int(np.searchsorted(ref_t, t + MATCH_S, side="right")) - 1
    return abs(hr - ref_hr[k]) if k >= 0 else float("nan")


def table() -> str:
    """The markdown tables of docs/beats.md: this detector, then each reference, against the consensus."""
    from sensors.beats import BeatTracker
    from sensors.features import REASONS, FeatureBank

    head = ("| record | signal | reference beats | sensitivity | PPV | RR error ms (median / p95) "
            "| bpm error (median / p95) | session HR error (median / p95) | beats without contact "
            "| intervals rejected |\n|---|---|---|---|---|---|---|---|---|---|\n")
    rows, refs = [], []
    for rec, (kind, stretches) in RECORDS.items():
        x, fs = load(rec)
        tr = BeatTracker(fs, kind)
        beats = []
        for i in range(0, x.size, 16):
            beats += tr.push(x[i:i + 16])
        cons, dets = reference(rec)
        span = (3.0, x.size / fs - 2.0)
        sc = score([b.t for b in beats], cons / fs, stretches, span=span, det_bpm=[b.bpm for b in beats])
        bank = FeatureBank(1, t0=0.0)
        counts = np.zeros(len(REASONS), dtype=int)
        ref_t, ref_hr = reference_hr(cons / fs)
        hr_err = []
        for b in beats:
            f = bank.update(b.t, np.array([b.bpm]), np.array([[b.rr_ms]]))
            counts += f.rejected_by[0]
            if b.t >= span[0] + 5 and not any(a <= b.t < z + 5 for a, z in stretches):
                hr_err.append(hr_error(b.t, f.hr[0], ref_t, ref_hr))
        hr_err = np.array(hr_err)[np.isfinite(hr_err)]
        rej = ", ".join(f"{r} {c}" for r, c in zip(REASONS, counts, strict=True) if c) or "none"
        nc = str(sc.in_no_contact) if stretches else "–"
        rows.append(f"| `{rec}` | {kind.upper()} {fs:g} Hz, {x.size / fs:.0f} s | {sc.n_ref} | {sc.sensitivity:.3f} "
                    f"| {sc.ppv:.3f} | {sc.rr_err_ms[0]:.1f} / {sc.rr_err_ms[1]:.1f} "
                    f"| {sc.bpm_err[0]:.1f} / {sc.bpm_err[1]:.1f} "
                    f"| {np.median(hr_err):.1f} / {np.percentile(hr_err, 95):.1f} | {nc} | {rej} |")
        for m, d in dets.items():
            r = score(d / fs, cons / fs, stretches, span=span)
            refs.append(f"| `{rec}` | {m} | {r.sensitivity:.3f} | {r.ppv:.3f} |")
    return (head + "\n".join(rows) + "\n\n| record | reference detector | sensitivity | PPV |\n|---|---|---|---|\n"
            + "\n".join(refs) + "\n")


def main() -> None:
    import sys

    if "--table" in sys.argv:
        print(table())
        return
    for rec in RECORDS:
        x, fs = load(rec)
        cons, dets = reference(rec, recompute=True)
        np.savez_compressed(FIXTURES / f"{rec}.ref.npz", consensus=cons, **{f"det_{k}": v for k, v in dets.items()})
        agree = {k: score(v / fs, cons / fs, RECORDS[rec][1]) for k, v in dets.items()}
        print(rec, len(cons), "reference beats;",
              ", ".join(f"{k} se {s.sensitivity:.3f} ppv {s.ppv:.3f}" for k, s in agree.items()))


if __name__ == "__main__":
    main()
