"""The headset: a thin OpenXR (pyopenxr) layer over the stereo rig in engine/stereo.py.

Without pyopenxr, or without an OpenXR runtime (SteamVR, Monado, Meta), it stops with one clear
message; ``--display auto`` never picks the headset.
"""

from __future__ import annotations

from .session import ConfigError

INSTALL = "pip install pyopenxr"


def open_headset():
    """Connect to the OpenXR runtime and its head-mounted display, or raise ConfigError."""
    try:
        import xr
    except ImportError:
        raise ConfigError(f"--display headset needs pyopenxr ({INSTALL}) and an OpenXR runtime "
                          "(SteamVR, Monado or the Meta runtime); use --display window") from None
    try:
        instance = xr.create_instance(xr.InstanceCreateInfo(
            enabled_extension_names=[xr.KHR_OPENGL_ENABLE_EXTENSION_NAME]))
    except Exception as e:  # noqa: BLE001 — pyopenxr raises a family of runtime errors
        raise ConfigError(f"--display headset: no OpenXR runtime is running ({type(e).__name__}); "
                          "start SteamVR, Monado or the Meta runtime, or use --display window") from None
    try:
        xr.get_system(instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
    except Exception as e:  # noqa: BLE001
        xr.destroy_instance(instance)
        raise ConfigError(f"--display headset: the OpenXR runtime sees no headset ({type(e).__name__}); "
                          "connect and wake it, or use --display window") from None
    xr.destroy_instance(instance)
    # Submitting frames needs the GL context of Panda3D's window bound to an XrSession
    # (XR_KHR_opengl_enable) and a swapchain per eye fed from engine/stereo.py's per-eye
    # textures; that binding is not in this build.
    raise ConfigError("--display headset: an OpenXR headset was found, but this build cannot yet "
                      "submit frames to it; use --display window")
