"""A real OpenXR runtime for the headset tests: Monado (simulated HMD) on a private Xvfb display.

The runtime is found from ``$XR_RUNTIME_JSON`` (set by .ci/run), else from the build cache that
.ci/build_monado.sh fills (``$EXPOSURE_CI_CACHE`` or ~/.cache/exposure-ci/monado-*/build/). Tests
skip with a reason when there is none (no Monado built on this machine), or no Xvfb.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

LAVAPIPE = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"


def find_runtime() -> str | None:
    j = os.environ.get("XR_RUNTIME_JSON")
    if j and Path(j).is_file():
        return j
    root = os.environ.get("EXPOSURE_CI_CACHE") or str(Path.home() / ".cache" / "exposure-ci")
    found = sorted(glob.glob(os.path.join(root, "monado-*", "build", "openxr_monado-dev.json")))
    return found[-1] if found else None


def skip_reason() -> str | None:
    try:
        import xr  # noqa: F401
    except ImportError:
        return "needs pyopenxr (pip install pyopenxr)"
    if find_runtime() is None:
        return ("no OpenXR runtime: set XR_RUNTIME_JSON or build Monado with .ci/build_monado.sh "
                "from a Monado source snapshot: .ci/build_monado.sh TARBALL; see docs/headset.md)")
    if not shutil.which("Xvfb"):
        return "needs Xvfb (Debian: xvfb) for the GLX context the OpenXR session binds to"
    return None


requires_runtime = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


class Xvfb:
    """A private X display for one test module; stopped by its own pid."""

    def __init__(self, size: str = "1280x1024x24"):
        r, w = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp"],
                                     pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        with os.fdopen(r) as f:
            num = f.readline().strip()
        if not num:
            self.proc.kill()
            raise RuntimeError("Xvfb did not start")
        self.display = f":{num}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def runtime_env(display: str, compositor: str = "null", **extra) -> dict:
    """Environment for an app on Monado: ``compositor`` null (20 Hz, images not read) or xcb
    (the real compositor, drawing both eyes into an X window at ~60 Hz)."""
    env = {"DISPLAY": display, "XR_RUNTIME_JSON": find_runtime() or "", "SIMULATED_ENABLE": "1",
           "XRT_LOG": "warning"}
    if Path(LAVAPIPE).is_file():
        env["VK_ICD_FILENAMES"] = LAVAPIPE
    if compositor == "null":
        env["XRT_COMPOSITOR_NULL"] = "1"
    else:
        env["XRT_COMPOSITOR_FORCE_XCB"] = "1"
    env.update(extra)
    return env


def capture_window(display: str, name: str) -> bytes:
    """The window's pixels as an X Window Dump (xwd, from x11-apps)."""
    if not shutil.which("xwd"):
        raise RuntimeError("needs xwd (Debian: x11-apps)")
    p = subprocess.run(["xwd", "-silent", "-display", display, "-name", name], capture_output=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"xwd -name {name!r}: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout
