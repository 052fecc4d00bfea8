"""The headset: a thin OpenXR (pyopenxr) layer over the stereo rig in engine/stereo.py.

:func:`open_headset` connects to the OpenXR runtime and its head-mounted display, or stops with
one clear :class:`~engine.session.ConfigError` (no pyopenxr, no runtime, no headset);
``--display auto`` never picks the headset. The rest is the smallest loop OpenXR asks for:

- the session is created from inside a draw callback of Panda3D's (mirror) window, where its
  OpenGL context is current (XR_KHR_opengl_enable, Xlib/GLX binding), with one swapchain per eye;
- each frame, :meth:`XrHeadset.pose` (the rig's pose source) waits for the frame, begins it and
  locates the eyes; the rig renders each eye into its own texture; a later draw callback copies
  each eye texture into that eye's swapchain image and ends the frame with a projection layer.

What runs here without a headset is the error path (tested) and, beneath this layer, the
stereo rig (tested offscreen with a stand-in pose source). The session/swapchain code below
has not been run against a real runtime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile

from engine.render.stereo import EyeView, HeadPose
from engine.session.live import ConfigError

log = logging.getLogger(__name__)

INSTALL = "pip install pyopenxr"
GL_RGBA8 = 0x8058
GL_SRGB8_ALPHA8 = 0x8C43
GL_TEXTURE_2D = 0x0DE1


@contextlib.contextmanager
def _quiet_stderr():
    """The OpenXR loader writes its own diagnostics to fd 2; keep them for the debug log so the
    user sees one clear line."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("OpenXR loader: %s", text)


def open_headset() -> XrHeadset:
    """Connect to the OpenXR runtime and its head-mounted display, or raise ConfigError."""
    try:
        import xr
    except ImportError:
        raise ConfigError(f"--display headset needs pyopenxr ({INSTALL}) and an OpenXR runtime "
                          "(SteamVR, Monado or the Meta runtime); use --display window") from None
    try:
        with _quiet_stderr():
            instance = xr.create_instance(xr.InstanceCreateInfo(
                enabled_extension_names=[xr.KHR_OPENGL_ENABLE_EXTENSION_NAME]))
    except Exception as e:  # noqa: BLE001 — pyopenxr raises a family of runtime errors
        raise ConfigError(f"--display headset: no OpenXR runtime is running ({type(e).__name__}); "
                          "start SteamVR, Monado or the Meta runtime, or use --display window") from None
    try:
        system = xr.get_system(instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
    except Exception as e:  # noqa: BLE001
        xr.destroy_instance(instance)
        raise ConfigError(f"--display headset: the OpenXR runtime sees no headset ({type(e).__name__}); "
                          "connect and wake it, or use --display window") from None
    try:
        return XrHeadset(xr, instance, system)
    except Exception as e:  # noqa: BLE001
        xr.destroy_instance(instance)
        raise ConfigError(f"--display headset: the OpenXR runtime cannot drive this headset with OpenGL "
                          f"({type(e).__name__}: {e}); use --display window") from None


def xr_to_panda_pos(p) -> tuple[float, float, float]:
    """OpenXR (x right, y up, −z forward) → Panda3D (x right, y forward, z up)."""
    return (p.x, -p.z, p.y)


def xr_to_panda_hpr(q) -> tuple[float, float, float]:
    from panda3d.core import Quat

    return tuple(Quat(q.w, q.x, -q.z, q.y).getHpr())


class XrHeadset:
    """One OpenXR instance, system, session and a swapchain per eye."""

    def __init__(self, xr, instance, system):
        self.xr, self.instance, self.system = xr, instance, system
        vt = xr.ViewConfigurationType.PRIMARY_STEREO
        self.view_type = vt
        self.config_views = xr.enumerate_view_configuration_views(instance, system, vt)
        v = self.config_views[0]
        self.eye_size = (v.recommended_image_rect_width, v.recommended_image_rect_height)
        xr.get_opengl_graphics_requirements_khr(instance, system)  # required before the session
        self.session = None
        self.space = None
        self.swapchains: list = []
        self.images: list = []
        self.running = False
        self.exit_requested = False
        self.frame_state = None
        self.views = None
        self.rig = None
        self.host = None

    # ---------------------------------------------------------------- wiring into Panda3D
    def attach(self, host, rig) -> None:
        """Create the session (first frame) and submit the eyes (every frame) from draw callbacks
        on the mirror window, where Panda3D's GL context is current."""
        from panda3d.core import PythonCallbackObject

        self.host, self.rig = host, rig
        region = host.output.makeDisplayRegion()
        region.setSort(100)
        region.setDrawCallback(PythonCallbackObject(self._draw_callback))

    def _draw_callback(self, cbdata) -> None:
        cbdata.upcall()
        try:
            if self.session is None:
                self._create_session()
            elif self.frame_state is not None:
                self._submit()
        except Exception as e:  # noqa: BLE001 — a failed frame ends the headset session, loudly
            log.error("OpenXR frame failed: %s", e)
            self.exit_requested = True

    def _create_session(self) -> None:
        from OpenGL import GLX

        xr = self.xr
        binding = xr.GraphicsBindingOpenGLXlibKHR(x_display=GLX.glXGetCurrentDisplay(),
                                                  glx_drawable=GLX.glXGetCurrentDrawable(),
                                                  glx_context=GLX.glXGetCurrentContext())
        self._binding = binding  # kept alive as long as the session
        self.session = xr.create_session(self.instance, xr.SessionCreateInfo(system_id=self.system, next=binding))
        self.space = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
            reference_space_type=xr.ReferenceSpaceType.STAGE))
        formats = xr.enumerate_swapchain_formats(self.session)
        fmt = GL_SRGB8_ALPHA8 if GL_SRGB8_ALPHA8 in formats else GL_RGBA8
        for v in self.config_views:
            sc = xr.create_swapchain(self.session, xr.SwapchainCreateInfo(
                usage_flags=xr.SwapchainUsageFlags.COLOR_ATTACHMENT_BIT | xr.SwapchainUsageFlags.TRANSFER_DST_BIT,
                format=fmt, sample_count=1, width=v.recommended_image_rect_width,
                height=v.recommended_image_rect_height, face_count=1, array_size=1, mip_count=1))
            self.swapchains.append(sc)
            self.images.append(xr.enumerate_swapchain_images(sc, xr.SwapchainImageOpenGLKHR))

    def _poll(self) -> None:
        xr = self.xr
        while True:
            try:
                ev = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                return
            if xr.StructureType(ev.type) == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                state = xr.SessionState(ctypes_cast(ev, xr.EventDataSessionStateChanged).state)
                if state == xr.SessionState.READY:
                    xr.begin_session(self.session, xr.SessionBeginInfo(primary_view_configuration_type=self.view_type))
                    self.running = True
                elif state == xr.SessionState.STOPPING:
                    xr.end_session(self.session)
                    self.running = False
                elif state in (xr.SessionState.EXITING, xr.SessionState.LOSS_PENDING):
                    self.exit_requested = True

    # ---------------------------------------------------------------- the rig's pose source
    def pose(self, t: float) -> HeadPose | None:
        """Wait for and begin the runtime's frame, locate the eyes; None when not running."""
        xr = self.xr
        self.frame_state = None
        if self.session is None:
            return None
        self._poll()
        if not self.running:
            return None
        fs = xr.wait_frame(self.session, xr.FrameWaitInfo())
        xr.begin_frame(self.session, xr.FrameBeginInfo())
        self.frame_state = fs
        _, views = xr.locate_views(self.session, xr.ViewLocateInfo(
            view_configuration_type=self.view_type, display_time=fs.predicted_display_time, space=self.space))
        self.views = views
        import math

        c = [xr_to_panda_pos(v.pose.position) for v in views]
        centre = tuple((a + b) / 2 for a, b in zip(c[0], c[1], strict=True))
        hpr = xr_to_panda_hpr(views[0].pose.orientation)
        eyes = tuple(EyeView(tuple(p - q for p, q in zip(ci, centre, strict=True)),
                             tuple(math.degrees(a) for a in (v.fov.angle_left, v.fov.angle_right,
                                                             v.fov.angle_down, v.fov.angle_up)))
                     for ci, v in zip(c, views, strict=True))
        return HeadPose(centre, hpr, eyes)

    def _submit(self) -> None:
        from OpenGL import GL

        xr = self.xr
        fs = self.frame_state
        layers = []
        if fs.should_render:
            gsg = self.host.output.getGsg()
            pviews = []
            for i, (sc, view) in enumerate(zip(self.swapchains, self.views, strict=True)):
                w, h = self.eye_size
                idx = xr.acquire_swapchain_image(sc, xr.SwapchainImageAcquireInfo())
                xr.wait_swapchain_image(sc, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
                tex = self.rig.eyes[i][1]
                src = tex.prepareNow(0, gsg.getPreparedObjects(), gsg).getNativeId()
                GL.glCopyImageSubData(src, GL_TEXTURE_2D, 0, 0, 0, 0, self.images[i][idx].image,
                                      GL_TEXTURE_2D, 0, 0, 0, 0, w, h, 1)
                xr.release_swapchain_image(sc, xr.SwapchainImageReleaseInfo())
                pviews.append(xr.CompositionLayerProjectionView(
                    pose=view.pose, fov=view.fov, sub_image=xr.SwapchainSubImage(
                        swapchain=sc, image_rect=xr.Rect2Di(extent=xr.Extent2Di(w, h)))))
            import ctypes

            self._layer = xr.CompositionLayerProjection(space=self.space, views=pviews)
            layers.append(ctypes.byref(self._layer))
        xr.end_frame(self.session, xr.FrameEndInfo(display_time=fs.predicted_display_time,
                                                   environment_blend_mode=xr.EnvironmentBlendMode.OPAQUE,
                                                   layers=layers))
        self.frame_state = None

    def close(self) -> None:
        xr = self.xr
        for sc in self.swapchains:
            xr.destroy_swapchain(sc)
        self.swapchains = []
        if self.session is not None:
            xr.destroy_session(self.session)
            self.session = None
        if self.instance is not None:
            xr.destroy_instance(self.instance)
            self.instance = None


def ctypes_cast(ev, cls):
    import ctypes

    return ctypes.cast(ctypes.byref(ev), ctypes.POINTER(cls)).contents
