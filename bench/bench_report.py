"""Benchmark: seconds per session report (``exposure report``), against the previous drawing.

Records a session with the virtual patient (the therapist script of the research tests: every
kind of command), then builds its report page many times and prints seconds per report:

- previous: the figure drawn as before (titles placed by matplotlib, which measures every tick
  label of the figure to do so; margins cropped by a second drawing pass), the reference;
- now, first drawing: titles at a fixed height, one drawing pass (the figure is laid out once);
- now, read + figure again: the session read and the figure worked out again, its drawing taken
  from the memo of rendered figures (a figure is a pure function of its calls), as when several
  reports of the same session, or of damaged copies whose damage does not change what is drawn,
  are made in one process;
- the page without the figure (reading the file twice, checks, summary, HTML), for scale.

Both drawings are made from the same recorded calls, in the same run, alternately; CPU time
(``time.process_time``) as well as wall time, since the machine may be shared.

    python bench/bench_report.py [--minutes 25] [--repeat 7]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.research import report  # noqa: E402
from engine.research.replay import load_log  # noqa: E402
from tests.engine.research_sessions import THERAPIST_SCRIPT, record  # noqa: E402


def previous_png(sk: report.Sketch) -> str:
    """The drawing as it was made before: auto-placed titles, cropped by a second pass."""
    calls = [(i, name, a, {k: v for k, v in kw.items() if not (name == "set_title" and k == "y")})
             for i, name, a, kw in sk.calls]
    old = report.Sketch(*sk.shape)
    old.calls[:] = calls
    return report._png(old.figure(dpi=100), crop=True)  # laid out at matplotlib's default dpi


def now_png(sk: report.Sketch) -> str:
    report.Sketch._memo.clear()
    return sk.png()


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = record(Path(d), duration_s=a.minutes * 60, script=THERAPIST_SCRIPT)
        log = load_log(path)
        sk = report.timeline_sketch(log)
        previous_png(sk), now_png(sk)  # imports, font cache
        prev, now, memo, page = [], [], [], []
        for _ in range(a.repeat):
            prev.append(timed(lambda: previous_png(sk)))
            now.append(timed(lambda: now_png(sk)))
            memo.append(timed(lambda: report.timeline_sketch(load_log(path)).png()))
            page.append(timed(lambda: report.build_report(path)))
        from PIL import Image

        sizes = {name: Image.open(io.BytesIO(__import__("base64").b64decode(fn(sk)))).size
                 for name, fn in (("previous", previous_png), ("now", now_png))}
    med = statistics.median
    pw, pc = med(x[0] for x in prev), med(x[1] for x in prev)
    print(f"{a.minutes:g}-minute session, {len(log.samples)} samples, {len(sk.calls)} drawing calls; "
          f"median of {a.repeat} (wall s / CPU s):")
    print(f"  previous drawing (reference):       {pw:6.3f} / {pc:6.3f}   image {sizes['previous']}")
    for label, xs in (("now, first drawing", now), ("now, read + figure again (memo)", memo)):
        w, c = med(x[0] for x in xs), med(x[1] for x in xs)
        print(f"  {label + ':':35s} {w:6.3f} / {c:6.3f}   {pc / c:5.1f}x faster (CPU)"
              + (f"   image {sizes['now']}" if label.startswith("now, first") else ""))
    w, c = med(x[0] for x in page), med(x[1] for x in page)
    print(f"  whole page, figure from the memo:   {w:6.3f} / {c:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
