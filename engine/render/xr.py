"""The headset: the project's own thin layer over pyopenxr, beneath the stereo rig (engine/stereo.py).

:func:`open_headset` connects to the OpenXR runtime and its head-mounted display, or stops with
one clear :class:`~engine.session.ConfigError` (no pyopenxr, no runtime, no headset);
``--display auto`` never picks the headset. Then, each frame:

- :meth:`XrHeadset.poll` (first thing in the runner's frame) drains the runtime's events through
  :class:`~engine.xr_lifecycle.Lifecycle` — READY begins the session, STOPPING ends it, leaving
  FOCUSED asks the runner to pause to the calm scene — and reads the patient's actions
  (engine/xr_actions.py);
- :meth:`XrHeadset.pose` (the rig's pose source) waits for the runtime's frame, begins it and
  locates both eyes at its predicted display time, in a LOCAL space recentred on the patient;
- a draw callback on Panda3D's (mirror) window, where its OpenGL context is current, creates
  the session the first time (XR_KHR_opengl_enable, Xlib/GLX binding, a swapchain per eye) and
  then copies each eye's texture into that eye's swapchain image and ends the frame.

Why our own layer rather than the PyPI package ``panda3d-openxr``: that package is built on
ShowBase (global ``base``/``render``, which our Host avoids so that scenes can be tested alone),
supports no actions (its README: "only rendering, camera tracking and hand tracking"), and needs
two work-arounds against Monado (a framebuffer with alpha bits to get an sRGB swapchain format;
its debug-utils messenger disabled to avoid a segfault at teardown). The session lifecycle and
the patient's controller input are the parts this project cannot do without, so we own them;
the rendering part is ~100 lines over pyopenxr (which bundles the OpenXR loader).

Tested against Monado (simulated HMD, null or XCB compositor; qwerty controllers) in
tests/engine/test_xr_monado.py; those tests skip with a reason when no runtime is found.
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
    """One OpenXR instance, system, session and a swapchain per eye; the patient's actions."""

    def __init__(self, xr, instance, system):
        from .xr_actions import XrActions
        from .xr_lifecycle import Lifecycle

        self.xr, self.instance, self.system = xr, instance, system
        vt = xr.ViewConfigurationType.PRIMARY_STEREO
        self.view_type = vt
        self.config_views = xr.enumerate_view_configuration_views(instance, system, vt)
        v = self.config_views[0]
        self.eye_size = (v.recommended_image_rect_width, v.recommended_image_rect_height)
        xr.get_opengl_graphics_requirements_khr(instance, system)  # required before the session
        props = xr.get_system_properties(instance, system)
        self.system_name = props.system_name.decode() if isinstance(props.system_name, bytes) else str(
            props.system_name)
        self.actions = XrActions(xr, instance)
        self.lifecycle = Lifecycle()
        self.session = None
        self.space = None
        self.swapchains: list = []
        self.images: list = []
        self.exit_requested = False
        self.exit_reason = ""
        self.frame_state = None
        self.views = None
        self.rig = None
        self.host = None
        self.eye_height = 1.65  # the scene's eye height: a LOCAL space has its origin at the eyes
        self._recenter_at: tuple[float, float, float] | None = None  # (heading, x, y) taken as zero
        self._recenter_pending = True  # on the first located frame
        self.last_head: tuple[tuple[float, float, float], float] | None = None
        # frame statistics: the runtime's predicted display times and our own frame times
        self.display_times: list[int] = []
        self.frame_period_ns = 0
        self.frames_rendered = 0
        self.frames_skipped = 0  # should_render false
        self.errors = 0

    @property
    def running(self) -> bool:
        return self.lifecycle.running

    @property
    def focused(self) -> bool:
        return self.lifecycle.focused

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
            self.errors += 1
            self.exit_requested = True
            self.exit_reason = f"OpenXR frame failed: {type(e).__name__}: {e}"

    def _create_session(self) -> None:
        from OpenGL import GLX

        xr = self.xr
        binding = xr.GraphicsBindingOpenGLXlibKHR(x_display=GLX.glXGetCurrentDisplay(),
                                                  glx_drawable=GLX.glXGetCurrentDrawable(),
                                                  glx_context=GLX.glXGetCurrentContext())
        self._binding = binding  # kept alive as long as the session
        self.session = xr.create_session(self.instance, xr.SessionCreateInfo(system_id=self.system, next=binding))
        self.space = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
            reference_space_type=xr.ReferenceSpaceType.LOCAL))
        formats = xr.enumerate_swapchain_formats(self.session)
        fmt = GL_SRGB8_ALPHA8 if GL_SRGB8_ALPHA8 in formats else GL_RGBA8
        for v in self.config_views:
            sc = xr.create_swapchain(self.session, xr.SwapchainCreateInfo(
                usage_flags=xr.SwapchainUsageFlags.COLOR_ATTACHMENT_BIT | xr.SwapchainUsageFlags.TRANSFER_DST_BIT,
                format=fmt, sample_count=1, width=v.recommended_image_rect_width,
                height=v.recommended_image_rect_height, face_count=1, array_size=1, mip_count=1))
            self.swapchains.append(sc)
            self.images.append(xr.enumerate_swapchain_images(sc, xr.SwapchainImageOpenGLKHR))
        self.actions.attach(self.session)

    # ---------------------------------------------------------------- events and input, once a frame
    def poll(self, t: float) -> list:
        """Drain the runtime's events; returns the :class:`LifecycleStep` of each state change."""
        xr = self.xr
        steps = []
        if self.session is None:
            return steps
        while True:
            try:
                ev = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                break
            kind = xr.StructureType(ev.type)
            if kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                state = xr.SessionState(ctypes_cast(ev, xr.EventDataSessionStateChanged).state).name
                step = self.lifecycle.on_state(state, t)
                if step.begin_session:
                    xr.begin_session(self.session, xr.SessionBeginInfo(primary_view_configuration_type=self.view_type))
                if step.end_session:
                    xr.end_session(self.session)
                if step.exit:
                    self.exit_requested = True
                    self.exit_reason = step.reason
                steps.append(step)
            elif kind == xr.StructureType.EVENT_DATA_REFERENCE_SPACE_CHANGE_PENDING:
                self._recenter_pending = True  # the runtime recentred: take the new forward as ours
            elif kind == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                self.exit_requested = True
                self.exit_reason = "headset runtime lost"
        return steps

    def read_actions(self, t: float):
        """The patient's action states this frame (all released unless the session is focused)."""
        return self.actions.read(t, self.focused and self.running)

    def request_exit(self) -> None:
        """Ask the runtime to end the session (it answers STOPPING → IDLE → EXITING)."""
        if self.session is not None and self.running:
            self.xr.request_exit_session(self.session)

    def recenter(self) -> None:
        """Take the patient's current heading and place as the scene's forward and origin."""
        self._recenter_pending = True

    # ---------------------------------------------------------------- the rig's pose source
    def pose(self, t: float) -> HeadPose | None:
        """Wait for and begin the runtime's frame, locate the eyes; None when not running."""
        xr = self.xr
        self.frame_state = None
        if self.session is None or not self.running or self.exit_requested:
            return None
        fs = xr.wait_frame(self.session, xr.FrameWaitInfo())
        xr.begin_frame(self.session, xr.FrameBeginInfo())
        self.frame_state = fs
        self.frame_period_ns = int(fs.predicted_display_period)
        self.display_times.append(int(fs.predicted_display_time))
        if not fs.should_render:
            self.frames_skipped += 1
        _, views = xr.locate_views(self.session, xr.ViewLocateInfo(
            view_configuration_type=self.view_type, display_time=fs.predicted_display_time, space=self.space))
        self.views = views
        return head_pose(views, self)

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
            self.frames_rendered += 1
        xr.end_frame(self.session, xr.FrameEndInfo(display_time=fs.predicted_display_time,
                                                   environment_blend_mode=xr.EnvironmentBlendMode.OPAQUE,
                                                   layers=layers))
        self.frame_state = None

    def stats(self) -> dict:
        """Frame statistics against the runtime's own timing (its predicted display times)."""
        return frame_stats(self.display_times, self.frame_period_ns, self.frames_rendered, self.frames_skipped)

    def close(self) -> None:
        """Destroy swapchains, session and instance; safe to call twice."""
        xr = self.xr
        if self.instance is None:
            return
        self.actions.close()
        for sc in self.swapchains:
            xr.destroy_swapchain(sc)
        self.swapchains = []
        if self.session is not None:
            xr.destroy_session(self.session)
            self.session = None
        if self.instance is not None:
            xr.destroy_instance(self.instance)
            self.instance = None


def frame_stats(display_times: list[int], period_ns: int, rendered: int = 0, skipped: int = 0) -> dict:
    """Frames and their spacing in the runtime's display times: a frame the app was late for
    shows as a step of two (or more) display periods. Intervals in milliseconds."""
    import statistics

    d = [(b - a) / 1e6 for a, b in zip(display_times, display_times[1:], strict=False)]
    out = {"frames": len(display_times), "rendered": rendered, "skipped": skipped,
           "period_ms": round(period_ns / 1e6, 3) if period_ns else None}
    if d:
        med = statistics.median(d)
        out.update(median_ms=round(med, 3), max_ms=round(max(d), 3),
                   over_2x_median=sum(x > 2 * med for x in d),
                   missed_periods=sum(max(0, round(x / (period_ns / 1e6)) - 1) for x in d) if period_ns else None,
                   rate_hz=round(1000.0 / med, 2) if med > 0 else None)
    return out


def head_pose(views, headset) -> HeadPose:
    """Two located views → the rig's head pose: the eyes' midpoint and the left eye's orientation
    in Panda3D axes, recentred (heading and floor position) on the patient, raised to the scene's
    eye height; each eye's offset in the head's own frame, and its field of view."""
    import math

    from panda3d.core import Quat, Vec3

    c = [xr_to_panda_pos(v.pose.position) for v in views]
    centre = [(a + b) / 2 for a, b in zip(c[0], c[1], strict=True)]
    q = views[0].pose.orientation
    hq = Quat(q.w, q.x, -q.z, q.y)
    h, p, r = hq.getHpr()
    if headset._recenter_pending:
        headset._recenter_at = (h, centre[0], centre[1])
        headset._recenter_pending = False
    h0, x0, y0 = headset._recenter_at or (0.0, 0.0, 0.0)
    a = math.radians(-h0)
    dx, dy = centre[0] - x0, centre[1] - y0
    pos = (dx * math.cos(a) - dy * math.sin(a), dx * math.sin(a) + dy * math.cos(a),
           centre[2] + headset.eye_height)
    inv = Quat(hq)
    inv.invertInPlace()
    eyes = []
    for ci, v in zip(c, views, strict=True):
        off = inv.xform(Vec3(*(u - w for u, w in zip(ci, centre, strict=True))))
        eyes.append(EyeView((off.x, off.y, off.z), tuple(math.degrees(x) for x in (
            v.fov.angle_left, v.fov.angle_right, v.fov.angle_down, v.fov.angle_up))))
    hpr = (h - h0, p, r)
    headset.last_head = (pos, hpr[0])
    return HeadPose(pos, hpr, tuple(eyes))


def ctypes_cast(ev, cls):
    import ctypes

    return ctypes.cast(ctypes.byref(ev), ctypes.POINTER(cls)).contents
