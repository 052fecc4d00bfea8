"""``exposure snapshot``: offscreen pictures of a scene at given intensities, with figures."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from engine.cli.common import UserError
from scenes.names import SCENES

WARMUP_FRAMES = 8


def register(sub) -> None:
    p = sub.add_parser("snapshot", help="render a scene offscreen to PNG files",
                       description="Render a scene offscreen at one or more intensities and save a PNG "
                                   "of the patient's default view for each; with --stats print one JSON "
                                   "object per image (draw calls, triangles, nodes, mean frame time).")
    p.add_argument("--scene", required=True, choices=SCENES + ("calm",))
    p.add_argument("--intensity", default="0,0.5,1", help="comma-separated intensities in [0, 1] (default 0,0.5,1)")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    p.add_argument("--hierarchy", default=None, help="a hierarchy TOML file of your own")
    p.add_argument("--size", default="960x720", help="WIDTHxHEIGHT (default 960x720)")
    p.add_argument("--stats", action="store_true", help="print figures as JSON lines")
    p.add_argument("--frames", type=int, default=300, help="frames timed for frame_ms (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_snapshot)


def parse_intensities(text: str) -> list[float]:
    out = []
    for part in str(text).split(","):
        try:
            x = float(part)
        except ValueError:
            raise UserError(f"--intensity {part.strip()!r} is not a number") from None
        if not 0.0 <= x <= 1.0:
            raise UserError(f"--intensity {x:g} is outside [0, 1]")
        out.append(x)
    return out


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r}: use WIDTHxHEIGHT, e.g. 960x720") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise UserError("--size must be between 16 and 8192 pixels each way")
    return w, h


class Snapshotter:
    """One offscreen host and scene, re-used for every intensity (a pure render, no session)."""

    def __init__(self, scene: str, size=(960, 720), hierarchy=None, seed: int = 0):
        from direct.task.Task import TaskManager
        from panda3d.core import ClockObject

        from scenes.host import Host, HostError
        from scenes.stage import make_scene

        try:
            self.host = Host("offscreen", size, fov=90.0)
        except HostError as e:
            raise UserError(str(e)) from None
        self.clock = ClockObject(ClockObject.M_non_real_time)
        self.clock.setFrameRate(30.0)
        self.tm = TaskManager()
        self.tm.setClock(self.clock)
        from scenes.hierarchy import load_hierarchy

        h = None if scene == "calm" else load_hierarchy(hierarchy or scene)
        self.scene = make_scene(scene, self.host.render, self.tm, self.clock, h, seed=seed)
        self.host.set_clear_color(self.scene.clear_color)

    def frame(self) -> None:
        self.clock.tick()
        self.tm.step()
        vp = self.scene.viewpoint()
        self.host.body.setPos(*vp.pos)
        self.host.body.setH(vp.heading)
        self.host.head.setPosHpr(0, 0, self.scene.eye_height, vp.look[0], vp.look[1], vp.roll)
        self.host.render_frame()

    def shoot(self, intensity: float, frames: int = 0) -> tuple[bytes, dict]:
        self.scene.set_intensity(intensity, instant=True)
        for _ in range(WARMUP_FRAMES):
            self.frame()
        png = self.host.png()
        stats = {"intensity": intensity, **self.host.stats()}
        if frames:
            t = time.perf_counter()
            for _ in range(frames):
                self.frame()
            stats["frame_ms"] = round((time.perf_counter() - t) / frames * 1000.0, 3)
        return png, stats

    def close(self) -> None:
        self.scene.destroy()
        self.host.close()


def cmd_snapshot(args) -> int:
    xs = parse_intensities(args.intensity)
    size = parse_size(args.size)
    if args.frames < 1:
        raise UserError("--frames must be at least 1")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {args.out}: {e.strerror}") from None
    snap = Snapshotter(args.scene, size, args.hierarchy, args.seed)
    try:
        for x in xs:
            png, stats = snap.shoot(x, args.frames if args.stats else 0)
            path = args.out / f"{args.scene}_{x:.2f}.png"
            path.write_bytes(png)
            if args.stats:
                print(json.dumps({"scene": args.scene, "file": str(path), **stats}), flush=True)
            else:
                print(path, file=sys.stdout)
    finally:
        snap.close()
    return 0
