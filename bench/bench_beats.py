"""Beat detection on the real recordings of tests/fixtures/: latency and throughput.

- latency, in signal time (exact, not wall-clock): how long after a beat its sample is produced,
  for samples pushed as a device sends them (chunks of 16 samples), past the first 5 s (the tracker
  starts reporting once it holds half a window, 4 s);
- throughput: streaming seconds of signal per second of CPU, against two references measured in
  the same run on the same record: one pass of :func:`sensors.beats.detect_beats` over the whole
  recording, and (when installed) neurokit2's own detector for that signal over the whole recording.

    python bench/bench_beats.py [--repeat N]
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sensors.beats import BeatTracker, detect_beats  # noqa: E402
from tests.sensors.beat_reference import RECORDS, load  # noqa: E402

CHUNK = 16


def stream(x: np.ndarray, fs: float, kind: str) -> tuple[list, list]:
    tr = BeatTracker(fs, kind)
    beats, lat = [], []
    for i in range(0, x.size, CHUNK):
        got = tr.push(x[i:i + CHUNK])
        now = (i + min(CHUNK, x.size - i)) / fs
        beats += got
        lat += [now - b.t for b in got if b.t > 5.0]  # after the first half window (start-up)
    return beats, lat


def best_of(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main(repeat: int) -> None:
    try:
        import neurokit2 as nk
    except ModuleNotFoundError:
        nk = None
    print(f"{'record':14s} {'latency s (median / max)':>25s} {'streaming':>12s} {'one pass':>11s} "
          f"{'neurokit2':>11s}  (× real time; best of {repeat})")
    for rec, (kind, _) in RECORDS.items():
        x, fs = load(rec)
        x = x.astype(float)
        dur = x.size / fs
        _, lat = stream(x, fs, kind)
        t_stream = best_of(lambda: stream(x, fs, kind), repeat)  # noqa: B023
        t_one = best_of(lambda: detect_beats(x, fs, kind), repeat)  # noqa: B023
        nk_txt = "n/a"
        if nk is not None:
            sr = int(round(fs))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if kind == "ecg":
                    t_nk = best_of(lambda: nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=sr), sampling_rate=sr),  # noqa: B023
                                   repeat)
                else:
                    t_nk = best_of(lambda: nk.ppg_findpeaks(nk.ppg_clean(x, sampling_rate=sr), sampling_rate=sr),  # noqa: B023
                                   repeat)
            nk_txt = f"{dur / t_nk:9.0f}×"
        print(f"{rec:14s} {np.median(lat):12.2f} / {max(lat):5.2f}   {dur / t_stream:10.0f}× {dur / t_one:10.0f}× "
              f"{nk_txt:>11s}   streaming = {t_stream / t_one:.1f}× the one-pass time")


if __name__ == "__main__":
    n = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3
    main(n)
