"""Make the figures of docs/beats.md from the real recordings in tests/fixtures/.

    python scripts/beats_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sensors.beats import BeatTracker  # noqa: E402
from tests.sensors.beat_reference import RECORDS, load, reference  # noqa: E402

OUT = ROOT / "docs" / "images"


def panel(ax, record: str, lo: float, hi: float, title: str) -> None:
    x, fs = load(record)
    x = x.astype(float)
    t = np.arange(x.size) / fs
    tr = BeatTracker(fs, RECORDS[record][0])
    beats = np.array([b.t for b in tr.push(x)])
    cons, dets = reference(record)
    m = (t >= lo) & (t < hi)
    ax.plot(t[m], x[m], color="0.2", lw=0.8)
    span = np.ptp(x[m])
    for k, (name, d) in enumerate(dets.items()):
        d = d[(d / fs >= lo) & (d / fs < hi)]
        ax.plot(d / fs, x[d] + (0.06 + 0.05 * k) * span, "v", ms=4, label=name)
    c = cons[(cons / fs >= lo) & (cons / fs < hi)]
    ax.plot(c / fs, x[c], "o", mfc="none", mec="red", ms=10, label="reference (majority)")
    b = beats[(beats >= lo) & (beats < hi)]
    ax.plot(b, x[np.round(b * fs).astype(int)] - 0.08 * span, "^", color="green", ms=7, label="this detector")
    for a, z in RECORDS[record][1]:
        if z > lo and a < hi:
            ax.axvspan(max(a, lo), min(z, hi), color="0.9", zorder=0)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("s")
    ax.legend(ncol=4, fontsize=6, loc="lower left")


def main() -> None:
    fig, ax = plt.subplots(2, 1, figsize=(10, 6))
    panel(ax[0], "ecg_mitdb208", 45, 51, "MIT-BIH 208: wide ventricular beats at 47.4 s and 49.2 s")
    panel(ax[1], "ecg_mitdb208", 205, 218, "MIT-BIH 208: a saturated stretch, then beats again")
    fig.tight_layout()
    fig.savefig(OUT / "beats_ecg_mitdb208.png", dpi=90)
    fig, ax = plt.subplots(2, 1, figsize=(10, 6))
    panel(ax[0], "ppg_heartpy1", 5, 12, "finger PPG: one beat per pulse, not per dicrotic wave")
    panel(ax[1], "ppg_heartpy2", 10, 50, "finger PPG: no finger (grey) until 28 s, then a weak pulse")
    fig.tight_layout()
    fig.savefig(OUT / "beats_ppg.png", dpi=90)


if __name__ == "__main__":
    main()
