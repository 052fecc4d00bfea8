"""A session report a therapist can file: one self-contained HTML page.

Plots are drawn with matplotlib (the Agg renderer, no display, no global pyplot state) and
embedded as base64 PNG, so the page needs no other file and no network. It shows heart rate
against the resting baseline with signal losses and shield interventions, intensity and level
with who changed them, SUDS ratings, a timeline of commands and events, and the summary numbers
(:func:`engine.store.summary.summarize`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import os
import tempfile
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from pathlib import Path

from engine.research.replay import SessionLog, load_log
from engine.store.files import StoreError, file_in_the_way, make_private_dirs
from engine.store.summary import summarize

SHIELD_COLOR = "#c62828"
THERAPIST_COLOR = "#1565c0"
DPI = 110


def _mmss(t: float) -> str:
    t = max(0.0, float(t))
    return f"{int(t // 60):02d}:{int(t % 60):02d}"


def _png(fig, crop: bool = True) -> str:
    """A figure as base64 PNG; ``crop`` trims the margins (a second drawing pass: a figure laid out
    with ``tight_layout`` has none to trim)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, **({"bbox_inches": "tight"} if crop else {}))
    return base64.b64encode(buf.getvalue()).decode("ascii")


class _Panel:
    """Stands in for one matplotlib Axes while a figure is described: records each call."""

    def __init__(self, calls: list, i: int):
        self._calls, self._i = calls, i

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self._calls.append((self._i, name, args, kwargs))
        return call


class Sketch:
    """A figure described as the Axes calls that draw it, drawn by :meth:`png`.

    Describing and drawing are apart so that the same drawing is rasterised once: matplotlib's
    rasterising is most of a report's time (0.3-0.5 s for the three panels here), and a figure
    is a pure function of its calls (fixed size, dpi and style), so :meth:`png` keeps the last
    few images by the text of their calls. Everything the figure shows is still worked out from
    the session on every call; only an identical drawing is taken from the memo.
    """

    MEMO_SIZE = 8
    _memo: OrderedDict[str, str] = OrderedDict()
    _memo_lock = threading.Lock()

    def __init__(self, nrows: int, figsize: tuple[float, float], height_ratios: tuple[float, ...]):
        self.shape = (nrows, tuple(figsize), tuple(height_ratios))
        self.calls: list[tuple[int, str, tuple, dict]] = []
        self.panels = [_Panel(self.calls, i) for i in range(nrows)]

    def key(self) -> str:
        # repr of floats is exact (round-trips), so two drawings share a key only when every
        # coordinate, label and style is the same
        return hashlib.sha256(repr((self.shape, self.calls)).encode("utf-8", "backslashreplace")).hexdigest()

    def figure(self, dpi: float = DPI):
        """The matplotlib Figure (Agg, no pyplot state), laid out for drawing at ``dpi``."""
        from matplotlib.figure import Figure

        nrows, figsize, ratios = self.shape
        fig = Figure(figsize=figsize, dpi=dpi)  # the PNG's: the text measured for the layout is reused
        axes = fig.subplots(nrows, 1, sharex=True, gridspec_kw={"height_ratios": list(ratios)})
        for i, name, args, kwargs in self.calls:
            getattr(axes[i], name)(*args, **kwargs)
        fig.tight_layout()  # margins fit the longest tick label (level names are whole)
        return fig

    def png(self) -> str:
        """The figure as base64 PNG; an identical drawing made before comes from the memo."""
        key = self.key()
        with self._memo_lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        img = _png(self.figure(), crop=False)
        with self._memo_lock:
            self._memo[key] = img
            while len(self._memo) > self.MEMO_SIZE:
                self._memo.popitem(last=False)
        return img


def _spans(ts: list[float], flags: list[bool]) -> list[tuple[float, float]]:
    out, start = [], None
    for t, f in zip(ts, flags, strict=True):
        if f and start is None:
            start = t
        elif not f and start is not None:
            out.append((start, t))
            start = None
    if start is not None and ts:
        out.append((start, ts[-1]))
    return out


def timeline_sketch(log: SessionLog) -> Sketch:
    """Three panels over minutes of the session: HR, intensity and level, SUDS."""
    sk = Sketch(3, (11, 8.2), (3, 3, 1.6))
    ax_hr, ax_x, ax_s = sk.panels
    feats = log.features
    m = lambda t: t / 60.0  # noqa: E731
    end_t = max(log.duration_s, max((f["t"] for f in feats), default=0.0), 1.0)

    # --- heart rate (gaps where no valid reading came are left open and shaded as lost)
    lost_after = float((log.meta.get("feature_config") or {}).get("lost_after_s", 5.0))
    valid = [f for f in feats if f["hr"] is not None and not f["lost"]]
    ft, hr, base = [], [], []
    for i, f in enumerate(valid):
        if i and f["t"] - valid[i - 1]["t"] > lost_after:
            ft.append(m(valid[i - 1]["t"] + lost_after))
            hr.append(math.nan)
            base.append(math.nan)
        ft.append(m(f["t"]))
        hr.append(f["hr"])
        base.append(math.nan if f["baseline"] is None else f["baseline"])
    raw_t = [m(s.t) for s in log.samples]
    raw = [s.bpm for s in log.samples]
    if raw_t:
        ax_hr.plot(raw_t, raw, ".", ms=2, color="#9e9e9e", label="reported by the sensor")
    if ft:
        ax_hr.plot(ft, hr, "-", lw=1.2, color="#d81b60", label="heart rate (accepted)")
        ax_hr.plot(ft, base, "--", lw=1.4, color="#2e7d32", label="resting baseline")
    vt = [log.t0] + [f["t"] for f in valid] + [end_t + lost_after]
    lost_spans = [(a + lost_after, b) for a, b in zip(vt, vt[1:], strict=False) if b - a > lost_after]
    for a, b in lost_spans:
        ax_hr.axvspan(m(a), m(min(b, end_t)), color="#ffcc80", alpha=0.6, lw=0)
    if lost_spans:
        ax_hr.axvspan(0, 0, color="#ffcc80", alpha=0.6, label="signal lost")
    shield = [e for e in log.events if e["kind"] == "shield"]
    if shield:
        finite = [x for x in hr if not math.isnan(x)]
        y = (max(finite) + 3) if finite else 100
        ax_hr.plot([m(e["t"]) for e in shield], [y] * len(shield), "v", color=SHIELD_COLOR, ms=7,
                   label="safety shield stepped in")
    ax_hr.set_ylabel("heart rate (bpm)")
    ax_hr.legend(loc="upper left", fontsize=8, ncol=3)
    ax_hr.grid(alpha=0.3)
    # titles at a fixed height (no x labels above a panel to clear): matplotlib would otherwise
    # measure every tick label of the figure to place them, a third of the drawing time
    ax_hr.set_title("Heart rate", loc="left", fontsize=11, y=1.0)

    # --- intensity and level
    lv = (log.meta.get("hierarchy") or {}).get("levels") or []
    sc = log.scene
    st = [m(s["t"]) for s in sc]
    ax_x.plot(st, [s["intensity"] for s in sc], "-", lw=1.8, color="#6a1b9a", label="intensity shown")
    dec = sorted(log.decisions, key=lambda d: d["t"])
    if dec:
        tt, yy = [0.0], [dec[0]["target_before"]]
        for d in dec:
            tt.append(m(d["t"]))
            yy.append(d["target_after"])
        tt.append(m(end_t))
        yy.append(yy[-1])
        ax_x.step(tt, yy, where="post", lw=1, ls=":", color="#424242", label="target")
    for s0, s1 in _spans([s["t"] for s in sc], [bool(s["paused"]) for s in sc]):
        ax_x.axvspan(m(s0), m(s1), color="#b3e5fc", alpha=0.6, lw=0)
    if any(bool(s["paused"]) for s in sc):
        ax_x.axvspan(0, 0, color="#b3e5fc", alpha=0.6, label="paused (calm scene)")
    ther = [d for d in dec if d["who"] not in ("baseline", "policy", "shield")]
    for d in ther:
        ax_x.axvline(m(d["t"]), color=THERAPIST_COLOR, lw=0.9, alpha=0.7)
    if ther:
        ax_x.plot([m(d["t"]) for d in ther], [d["target_after"] for d in ther], "o", color=THERAPIST_COLOR,
                  ms=5, label="therapist set it")
    down = [d for d in dec if d["who"] == "shield" and d["target_after"] < d["target_before"]]
    if down:
        ax_x.plot([m(d["t"]) for d in down], [d["target_after"] for d in down], "v", color=SHIELD_COLOR, ms=7,
                  label="shield lowered it")
    capped = [d for d in dec if d["who"] == "shield" and d["target_after"] > d["target_before"]]
    if capped:
        ax_x.plot([m(d["t"]) for d in capped], [d["target_after"] for d in capped], "s", color=SHIELD_COLOR,
                  ms=5, mfc="none", label="shield capped a rise")
    if lv:
        ax_x.set_yticks([float(x) for _, x in lv])
        ax_x.set_yticklabels([f"L{i} {n}" for i, (n, _) in enumerate(lv)], fontsize=7)  # whole names
    ax_x.set_ylim(-0.03, 1.03)
    ax_x.grid(alpha=0.3)
    ax_x.legend(loc="upper left", fontsize=8, ncol=3)
    ax_x.set_title("Exposure intensity and hierarchy level", loc="left", fontsize=11, y=1.0)

    # --- SUDS
    su = log.suds
    if su:
        ax_s.plot([m(s["t"]) for s in su], [s["value"] for s in su], "o-", color="#ef6c00", ms=5)
        for s in su:
            ax_s.annotate(f"{s['value']:.0f}", (m(s["t"]), s["value"]), textcoords="offset points",
                          xytext=(0, 5), ha="center", fontsize=7)
    else:
        ax_s.text(m(end_t) / 2, 50, "no SUDS ratings in this session", ha="center", va="center",
                  color="#757575")  # the middle of the panel (its limits are set below)
    ax_s.axhline(90, color=SHIELD_COLOR, lw=0.8, ls="--")
    ax_s.set_ylim(-5, 108)
    ax_s.set_ylabel("SUDS (0–100)")
    ax_s.set_xlabel("minutes from the start of the session")
    ax_s.grid(alpha=0.3)
    ax_s.set_title("SUDS (distress ratings; dashed: shield ceiling)", loc="left", fontsize=11, y=1.0)
    ax_s.set_xlim(0, m(end_t))
    return sk


def timeline_figure(log: SessionLog):
    """The three panels as a matplotlib Figure."""
    return timeline_sketch(log).figure()


def _level_rows(log: SessionLog) -> list[dict]:
    """Per level reached: time spent there, HR rise over baseline (peak, mean), SUDS given there."""
    levels = (log.meta.get("hierarchy") or {}).get("levels") or []
    sc = [x for x in log.scene if isinstance(x["level"], int)]
    spent: dict[int, float] = {}
    for a, b in zip(sc, sc[1:], strict=False):
        spent[a["level"]] = spent.get(a["level"], 0.0) + max(0.0, b["t"] - a["t"])
    lv_t = [x["t"] for x in sc]
    feats = [f for f in log.features if f["hr_delta"] is not None and not f["lost"]]
    deltas: dict[int, list[float]] = {}
    for f in feats:
        j = bisect_right(lv_t, f["t"]) - 1
        if j >= 0:
            deltas.setdefault(sc[j]["level"], []).append(f["hr_delta"])
    suds: dict[int, list[float]] = {}
    for x in log.suds:
        if isinstance(x["level"], int):
            suds.setdefault(x["level"], []).append(x["value"])
    rows = []
    for lv in sorted(set(spent) | set(deltas) | set(suds)):
        d = deltas.get(lv, [])
        rows.append({"level": lv, "name": levels[lv][0] if 0 <= lv < len(levels) else "?",
                     "minutes": spent.get(lv, 0.0) / 60.0, "peak_delta": max(d) if d else None,
                     "mean_delta": sum(d) / len(d) if d else None, "suds": suds.get(lv, [])})
    return rows


def _events_rows(log: SessionLog) -> list[tuple[float, str, str, str]]:
    """(t, what, who, detail) for the timeline table: commands, SUDS, shield, mode, signal."""
    rows = []
    for c in log.commands:
        if c["type"] == "suds":
            continue
        p = c["payload"] if isinstance(c["payload"], dict) else {}
        detail = ", ".join(f"{k}={v}" for k, v in p.items() if k != "type")
        if not c.get("accepted", 1):
            detail = (detail + "; " if detail else "") + f"refused: {c.get('error')}"
        rows.append((c["t"], f"command: {c['type']}", str(c.get("origin")), detail))
    for s in log.suds:
        rows.append((s["t"], "SUDS rating", str(s.get("origin")), f"{s['value']:.0f} at level {s.get('level')}"))
    skip = {"shield", "rr_rejected", "mode", "end", "scene_event", "annotation"}
    for e in log.events:
        d = e["detail"] if isinstance(e["detail"], dict) else {}
        if e["kind"] == "shield":
            rows.append((e["t"], "safety shield", "shield", str(d.get("reason", ""))))
        elif e["kind"] == "mode":
            rows.append((e["t"], "mode change", str(d.get("by", "")), f"{d.get('from')} → {d.get('to')}"))
        elif e["kind"] == "end":
            rows.append((e["t"], "session ended", "", str(d.get("reason", ""))))
        elif e["kind"] not in skip:
            rows.append((e["t"], str(e["kind"]).replace("_", " "), "",
                         ", ".join(f"{k}={v}" for k, v in d.items())))
    rows.sort(key=lambda r: r[0])
    return rows


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#212121}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#616161;margin-bottom:14px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
.card{border:1px solid #e0e0e0;border-radius:8px;padding:10px 12px}
.card .k{font-size:12px;color:#757575} .card .v{font-size:20px;font-weight:600}
.warn{background:#fff3e0;border:1px solid #ffb74d;border-radius:8px;padding:8px 12px;margin:10px 0}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border-bottom:1px solid #eee;padding:4px 6px;text-align:left}
th{background:#fafafa} td.t{font-variant-numeric:tabular-nums;white-space:nowrap}
tr.shield td{color:#c62828} tr.command td{color:#1565c0}
img{max-width:100%;border:1px solid #eee}
footer{margin-top:30px;color:#9e9e9e;font-size:12px}
"""


def build_report(path: Path, problems: list[str] | None = None) -> str:
    """The report page for one session file, as an HTML string; what could not be read (named at
    the top of the page) is also appended to ``problems`` when given."""
    log = load_log(path)
    if problems is not None:
        problems.extend(log.problems)
    s = summarize(path)
    e = html.escape
    meta = log.meta
    img = timeline_sketch(log).png()
    levels = (meta.get("hierarchy") or {}).get("levels") or []
    suds_vals = [x["value"] for x in log.suds]

    def lvl(i):
        return f"L{i} {levels[i][0]}" if isinstance(i, int) and 0 <= i < len(levels) else str(i)

    def num(x, fmt="{:.0f}", unit=""):
        return "–" if x is None else fmt.format(x) + unit

    unknown = set(s["unknown"])

    def fact(key, text):  # a fact the damaged file cannot establish is shown as unknown
        return "unknown (the file is damaged)" if key in unknown else text

    cards = [
        ("duration", fact("duration_s", f"{(s['duration_s'] or 0) / 60:.1f} min")),
        ("resting baseline HR", num(s["baseline_hr"], unit=" bpm")),
        ("peak HR", num(s["peak_hr"], unit=" bpm")),
        ("peak rise over baseline", num(None if s["peak_hr"] is None or s["baseline_hr"] is None
                                        else s["peak_hr"] - s["baseline_hr"], "{:+.0f}", " bpm")),
        ("highest level reached", fact("top_level", e(lvl(s["top_level"])))),
        ("final level", fact("final_level", e(lvl(s["final_level"])))),
        ("SUDS ratings", fact("suds", f"{len(suds_vals)}" + (f" (peak {max(suds_vals):.0f})" if suds_vals else ""))),
        ("safety shield interventions", fact("shield_interventions", str(s["shield_interventions"]))),
    ]
    if s.get("no_signal"):
        cards.append(("heart-rate signal", e(s["no_signal"])))
    if "baseline_hr" in unknown:
        cards[1:4] = [(k, "unknown (the file is damaged)") for k, _ in cards[1:4]]
    changes = "".join(f"<tr><td>{c['count']}</td><td>{e(str(c['who']))}</td><td>{e(str(c['reason']))}</td></tr>"
                      for c in s["changes"] or ()) or (
        "<tr><td colspan=3>unknown (the file is damaged)</td></tr>" if "changes" in unknown
        else "<tr><td colspan=3>no change of intensity</td></tr>")
    # per level: the time there and the HR rise need an intact scene record (which level, when),
    # the HR rise intact features too, the SUDS an intact SUDS table; else they are unknown
    no_scene, no_hr, no_suds = "top_level" in unknown, "peak_hr" in unknown, "suds" in unknown
    dunno = "unknown (damaged)"
    lrows = "".join(
        f"<tr><td>L{r['level']}</td><td>{e(r['name'])}</td>"
        f"<td>{dunno if no_scene else format(r['minutes'], '.1f')}</td>"
        f"<td>{dunno if no_scene or no_hr else num(r['mean_delta'], '{:+.0f}')}</td>"
        f"<td>{dunno if no_scene or no_hr else num(r['peak_delta'], '{:+.0f}')}</td>"
        f"<td>{dunno if no_suds else (', '.join(f'{v:.0f}' for v in r['suds']) or '–')}</td></tr>"
        for r in _level_rows(log))
    ev = _events_rows(log)
    ev_html = "".join(
        f"<tr class='{'shield' if who == 'shield' else ('command' if what.startswith('command') else '')}'>"
        f"<td class=t>{_mmss(t)}</td><td>{e(what)}</td><td>{e(who)}</td><td>{e(detail)}</td></tr>"
        for t, what, who, detail in ev[:400])
    more = f"<p>… and {len(ev) - 400} more (see the export for all)</p>" if len(ev) > 400 else ""
    warn = ""
    if log.problems:
        warn = ("<div class=warn><b>Parts of this session file could not be read</b> (the report shows "
                "what is intact):<ul>" + "".join(f"<li>{e(p)}</li>" for p in log.problems) + "</ul></div>")
    ended = s["ended"] if "ended" not in unknown else "unknown (the file is damaged)"
    cards_html = "".join(f"<div class=card><div class=k>{k}</div><div class=v>{v}</div></div>" for k, v in cards)
    ev_html = ev_html or "<tr><td colspan=4>none</td></tr>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Session report {e(s['id'])}</title>
<style>{CSS}</style></head><body>
<h1>Exposure session report</h1>
<div class=sub>Patient <b>{e(str(s['patient']))}</b> · scene <b>{e(str(s['scene']))}</b>
 ({e(str((meta.get('hierarchy') or {}).get('name', '')))}) · started {e(str(meta.get('started_at', '?')))}
 · controller <b>{e(str(s['controller']))}</b> · sensor {e(str(meta.get('sensor', '?')))}
 · ended: {e(str(ended))}</div>
{warn}
<div class=cards>{cards_html}</div>
<h2>Over the session</h2>
<img id="timeline" alt="heart rate, intensity and level, SUDS over the session" src="data:image/png;base64,{img}">
<p style="font-size:12px;color:#616161">Top: heart rate accepted by the signal checks (line), what the
sensor reported (grey dots), the resting baseline (dashed), signal lost (orange), shield interventions (red ▼).
Middle: intensity shown in the scene, the target it was moving to, therapist changes (blue), the shield
lowering it (red ▼) or capping a rise (red □), pauses (light blue). Bottom: SUDS ratings. Times are
minutes from the start; the tables below give them as mm:ss.</p>
<h2>Time at each level</h2>
<table><tr><th>level</th><th>name</th><th>minutes</th><th>mean HR rise (bpm)</th><th>peak HR rise (bpm)</th>
<th>SUDS given there</th></tr>{lrows or '<tr><td colspan=6>no scene record</td></tr>'}</table>
<h2>Who changed the intensity, and why</h2>
<table><tr><th>times</th><th>who</th><th>reason</th></tr>{changes}</table>
<h2>Commands and events</h2>
<table><tr><th>time</th><th>what</th><th>who</th><th>detail</th></tr>{ev_html}</table>{more}
<footer>Session {e(s['id'])} · file {e(os.path.basename(str(s['path'])))} · {len(log.samples)} samples,
{len(log.decisions)} decisions · report made {time.strftime('%Y-%m-%d %H:%M')} by exposure
{e(str(meta.get('software_version', '')))}. Pseudonymous data: the file holds no patient name.</footer>
</body></html>
"""


def write_report(path: Path, out: Path, force: bool = False, problems: list[str] | None = None) -> Path:
    """Write the report page atomically (0600: it holds patient data); returns its path. What could
    not be read is appended to ``problems`` when given (the page names it too)."""
    check_out(out, force)
    return write_page(build_report(path, problems), out)


def check_out(out: Path, force: bool) -> None:
    """Refuse an --out that is not an .html file or that exists (unless ``force``)."""
    out = Path(out).expanduser()
    if out.suffix.lower() not in (".html", ".htm"):
        raise StoreError(f"--out {out}: the report is an HTML page; give a file name ending in .html")
    if out.is_dir():
        raise StoreError(f"--out {out} is a folder; give the report's file name (ending in .html)")
    if out.exists() and not force:
        raise StoreError(f"{out} already exists; choose another --out or pass --force")


def write_page(page: str, out: Path) -> Path:
    """Write an HTML page atomically, mode 0600 (it holds patient data); returns its path."""
    out = Path(out).expanduser()
    try:
        make_private_dirs(out.parent)  # new folders are private; existing ones are left alone
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=out.parent)
    except OSError as e:
        in_the_way = file_in_the_way(out.parent)
        why = f"{in_the_way} is a file, not a folder" if in_the_way is not None else e.strerror
        raise StoreError(f"cannot write {out}: {why}") from None
    try:
        # text no UTF-8 can hold (a lone surrogate in a note logged by an older version) is shown
        # as its escape, \ud800, rather than failing the page
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(page)
        os.chmod(tmp, 0o600)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
