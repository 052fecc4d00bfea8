"""Make docs/images/headset_compositor.png: the OpenXR runtime's compositor window with the scene in
both eyes, from a real headset session.

    python scripts/headset_screenshot.py [--out docs/images/headset_compositor.png] [--scene heights]

Needs Monado (``.ci/build_monado.sh`` builds it; or XR_RUNTIME_JSON), Xvfb and xwd (x11-apps).
Starts a private Xvfb, runs ``python -m engine run --display headset`` on the virtual patient
with Monado's simulated HMD and its real compositor drawing into an X window
(XRT_COMPOSITOR_FORCE_XCB=1), captures that window with xwd while the session runs and keeps the
last capture.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import cli_env  # noqa: E402
from tests.engine.xr_runtime import Xvfb, capture_window, find_runtime, runtime_env  # noqa: E402
from tests.engine.xwd import read_xwd  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs/images/headset_compositor.png")
    ap.add_argument("--scene", default="heights")
    ap.add_argument("--duration", default="60s", help="session time (at --speed max, 4 s per real frame)")
    a = ap.parse_args()
    if find_runtime() is None:
        raise SystemExit("no OpenXR runtime: build Monado with .ci/build_monado.sh or set XR_RUNTIME_JSON")
    import matplotlib.image

    x = Xvfb()
    last = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--display", "headset", "--scene",
                                     a.scene, "--duration", a.duration, "--speed", "max", "--console", "off",
                                     "--sessions-dir", tmp], cwd=ROOT, env=cli_env(**runtime_env(x.display, "xcb")),
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            while proc.poll() is None:
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
                try:
                    last = read_xwd(capture_window(x.display, "Monado"))
                except RuntimeError:
                    pass
            print(proc.stdout.read().strip())
    finally:
        x.stop()
    if last is None:
        raise SystemExit("never saw the compositor window")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(a.out, last)
    print(f"wrote {a.out} ({last.shape[1]}x{last.shape[0]})")


if __name__ == "__main__":
    main()
