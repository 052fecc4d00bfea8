"""A course report: one self-contained HTML page over a patient's sessions of one scene.

Per session across the course: where it started and the highest level reached, the SUDS and
the HR rise at each level, the return of fear at its start, and the minutes in VR. Plots are
drawn with matplotlib (Agg, no pyplot state) and embedded as PNG, like the session report
(:mod:`engine.research.report`), whose page writer and style it shares.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path

from engine.research.report import CSS, _png, check_out, write_page
from engine.store.course import Course, read_course
from engine.store.files import StoreError


def course_figure(course: Course, level_names: list[str]):
    """Five panels: levels per session; SUDS by level; HR rise by level; return of fear; minutes."""
    from matplotlib.figure import Figure

    ss = course.sessions
    idx = [s.index for s in ss]
    fig = Figure(figsize=(11, 11))
    gs = fig.add_gridspec(3, 2, height_ratios=[1, 1.2, 1])
    ax_lv = fig.add_subplot(gs[0, :])
    ax_suds, ax_hr = fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1])
    ax_rof, ax_min = fig.add_subplot(gs[2, 0]), fig.add_subplot(gs[2, 1])
    n_levels = max(len(level_names), 1)

    ax_lv.vlines(idx, [s.start_level for s in ss], [s.highest_level for s in ss], color="#90caf9", lw=8,
                 label="levels covered")
    ax_lv.plot(idx, [s.highest_level for s in ss], "o-", color="#1565c0", label="highest level reached")
    ax_lv.plot(idx, [s.start_level for s in ss], "s", color="#616161", label="start level")
    ax_lv.set_ylim(-0.5, n_levels - 0.5)
    ax_lv.set_ylabel("level")
    ax_lv.set_title("Levels per session")
    ax_lv.legend(loc="upper left", fontsize=8)

    from matplotlib import colormaps

    for i, s in enumerate(ss):
        color = colormaps["viridis"](i / max(len(ss) - 1, 1))
        for ax, by in ((ax_suds, s.suds_by_level), (ax_hr, s.hr_rise_by_level)):
            lv = sorted(int(k) for k in by)
            if lv:
                ax.plot(lv, [by[k] for k in lv], "o-", color=color, label=f"session {s.index}")
    ax_suds.set_title("SUDS at each level (last rating there)")
    ax_suds.set_ylim(0, 100)
    ax_hr.set_title("Peak HR rise over baseline at each level (bpm)")
    for ax in (ax_suds, ax_hr):
        ax.set_xlabel("level")
        ax.set_xlim(-0.5, n_levels - 0.5)
        if ax.lines:
            ax.legend(fontsize=8)

    rof = [math.nan if s.return_of_fear is None else s.return_of_fear for s in ss]
    ax_rof.bar(idx, [0.0 if math.isnan(r) else r for r in rof],
               color=["#e0e0e0" if math.isnan(r) else ("#c62828" if r > 0 else "#2e7d32") for r in rof])
    for i, r in zip(idx, rof, strict=True):
        if math.isnan(r):
            ax_rof.annotate("not measured", (i, 0), ha="center", va="bottom", fontsize=7, color="#757575")
    ax_rof.axhline(0, color="#9e9e9e", lw=0.8)
    ax_rof.set_title("Return of fear at the start (SUDS points)")
    ax_min.bar(idx, [s.minutes for s in ss], color="#78909c")
    ax_min.set_title("Minutes in VR")
    for ax in (ax_lv, ax_rof, ax_min):
        ax.set_xlabel("session")
        ax.set_xticks(idx)
    fig.tight_layout()
    return fig


def build_course_report(sessions_dir: Path, patient: str, scene: str) -> str:
    course = read_course(sessions_dir, patient, scene)
    if not course.sessions:
        raise StoreError(f"no course of patient {patient!r} in scene {scene!r} in {sessions_dir}; "
                         f"list the patient's sessions with 'exposure sessions --patient {patient}'")
    from engine.store.files import SessionReader

    with SessionReader(Path(course.sessions[-1].path)) as r:
        names = [lv[0] for lv in (r.meta.get("hierarchy") or {}).get("levels") or []]
    e = html.escape

    def num(x, fmt="{:.0f}"):
        return "–" if x is None else fmt.format(x)

    def lvl(i):
        return f"L{i} {names[i]}" if 0 <= i < len(names) else f"L{i}"

    img = _png(course_figure(course, names), crop=False)  # laid out with tight_layout: nothing to trim
    rows = "".join(
        f"<tr><td>{s.index}</td><td>{e(str(s.started_at or '?'))}</td><td>{s.minutes:.1f}</td>"
        f"<td>{e(lvl(s.start_level))}</td><td>{e(lvl(s.highest_level))}</td><td>{num(s.peak_suds)}</td>"
        f"<td>{num(s.peak_hr_rise, '{:+.0f}')}</td><td>{num(s.return_of_fear, '{:+.0f}')}</td>"
        f"<td>{e(s.ended)}</td><td>{e(s.id)}</td></tr>" for s in course.sessions)
    warn = ""
    if course.warnings:
        warn = ("<div class=warn><b>Sessions left out</b> (damaged files):<ul>"
                + "".join(f"<li>{e(w)}</li>" for w in course.warnings) + "</ul></div>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Course report {e(patient)} {e(scene)}</title>
<style>{CSS}</style></head><body>
<h1>Exposure course report</h1>
<div class=sub>Patient <b>{e(patient)}</b> · scene <b>{e(scene)}</b> · course {e(str(course.course_id))}
 · {len(course.sessions)} session(s) · {course.minutes:.1f} minutes in VR</div>
{warn}
<h2>Across the course</h2>
<img id="course" alt="levels, SUDS and HR rise by level, return of fear and minutes per session"
 src="data:image/png;base64,{img}">
<p style="font-size:12px;color:#616161">Top: each session's start level (grey) and the highest level it
reached (blue); the next session starts one level below that. Middle: the last SUDS rating given at each
level and the peak heart-rate rise over the resting baseline at each level, one line per session. Bottom:
return of fear (a session's first SUDS rating minus the last rating at that level in the session before;
red when fear came back) and minutes in VR.</p>
<h2>Sessions</h2>
<table><tr><th>#</th><th>started</th><th>minutes</th><th>start level</th><th>highest level</th>
<th>peak SUDS</th><th>peak HR rise (bpm)</th><th>return of fear</th><th>ended</th><th>session</th></tr>
{rows}</table>
<footer>Report made {time.strftime('%Y-%m-%d %H:%M')}. Pseudonymous data: the files hold no patient
name.</footer>
</body></html>
"""


def write_course_report(sessions_dir: Path, patient: str, scene: str, out: Path, force: bool = False) -> Path:
    check_out(out, force)
    return write_page(build_course_report(sessions_dir, patient, scene), out)
