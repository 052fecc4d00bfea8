"""Sensors benchmark: parse + features per sample, and one hour of 250 Hz waveform through beat
detection (goal ≥ 500× real time). Each figure is printed with a reference measured in the same run.

    python bench/bench_sensors.py [--quick]
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sensors.beats import BeatTracker, detect_beats  # noqa: E402
from sensors.features import FeatureBank  # noqa: E402
from sensors.parsers import check_reading, parse_hr_measurement  # noqa: E402
from sensors.sample import Sample  # noqa: E402
from tests.sensors.waveforms import synthetic  # noqa: E402


def bench_parse_features(n: int) -> None:
    rng = np.random.default_rng(0)
    payloads = []
    for _ in range(n):
        hr = int(rng.integers(55, 120))
        rr = [int(60 / hr * 1024 + rng.normal(0, 20)) for _ in range(int(rng.integers(0, 3)))]
        payloads.append(bytes([0x16 if rr else 0x06, hr]) + b"".join(struct.pack("<H", r) for r in rr))

    t = time.perf_counter()
    for b in payloads:  # reference: the bare struct decode of the flags and the uint8 HR
        struct.unpack_from("<BB", b)
    ref = (time.perf_counter() - t) / n * 1e6

    bank = FeatureBank(1)
    rr_arr = np.full((1, 3), np.nan)
    t0 = time.perf_counter()
    for i, b in enumerate(payloads):
        m = parse_hr_measurement(b)
        check_reading(float(m.bpm), m.rr_ms)
        s = Sample(float(i), 0.0, float(m.bpm), m.rr_ms, m.contact, "bench")
        rr_arr[:] = np.nan
        rr_arr[0, :len(s.rr_ms)] = s.rr_ms
        bank.update(s.t, np.array([s.bpm]), rr_arr, np.array([1], dtype=np.int8))
    per = (time.perf_counter() - t0) / n * 1e6
    t1 = time.perf_counter()
    for b in payloads:
        parse_hr_measurement(b)
    parse_only = (time.perf_counter() - t1) / n * 1e6
    print(f"parse + features: {per:.1f} µs per sample ({n} samples; parse alone {parse_only:.2f} µs; "
          f"reference bare struct decode {ref:.2f} µs → {per / ref:.0f}× the reference; "
          f"a strap sends ≤ 4 samples/s: {250_000 / per:.0f}× headroom on a 250 ms budget)")


def bench_waveform(hours: float) -> None:
    fs = 250.0
    secs = hours * 3600
    x, beats = synthetic("ecg", 72, secs, fs=fs, seed=1)
    t = time.perf_counter()
    found = detect_beats(x, fs, "ecg")  # reference: one pass over the whole recording
    ref = time.perf_counter() - t
    tr = BeatTracker(fs, "ecg")
    t = time.perf_counter()
    n = 0
    step = int(fs / 10)  # as a device delivers it: chunks of 0.1 s
    for i in range(0, len(x), step):
        n += len(tr.push(x[i:i + step]))
    el = time.perf_counter() - t
    print(f"waveform: {secs / 3600:g} h of 250 Hz ECG through streaming beat detection in {el:.2f} s = "
          f"{secs / el:.0f}× real time (goal ≥ 500×); reference one-pass detect_beats {ref:.2f} s = "
          f"{secs / ref:.0f}× real time; streaming costs {el / ref:.1f}× the one-pass reference; "
          f"beats {n} streamed / {len(found)} one-pass / {len(beats)} true")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    bench_parse_features(5_000 if quick else 50_000)
    bench_waveform(0.1 if quick else 1.0)
