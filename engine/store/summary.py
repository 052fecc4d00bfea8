"""What happened in a session, from its log: for the demo and for reports."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from engine.store.files import SessionReader


def summarize(path: Path) -> dict:
    """What happened in a session, from its log: for the demo and for reports."""
    with SessionReader(path) as r:
        info = r.info()
        feats = r.records("features")
        decisions = r.records("decisions")
        shield = [e for e in r.records("events") if e["kind"] == "shield"]
        suds = r.records("suds")
        scene = r.records("scene")
    hr = [f["hr"] for f in feats if f["hr"] is not None and not f["lost"]]
    base = next((f["baseline"] for f in reversed(feats) if f["baseline"] is not None), None)
    levels = [s["level"] for s in scene]
    names = info.meta.get("hierarchy", {}).get("levels", [])
    top = max(levels) if levels else 0
    who = Counter((d["who"], d["reason"]) for d in decisions if d["target_before"] != d["target_after"])
    return {
        "id": info.id, "path": str(info.path), "patient": info.meta.get("patient"),
        "scene": info.meta.get("scene"), "controller": info.meta.get("controller"),
        "duration_s": info.duration_s, "samples": info.counts.get("samples", 0),
        "baseline_hr": base, "peak_hr": max(hr) if hr else None,
        "top_level": top, "top_level_name": names[top][0] if top < len(names) else None,
        "final_level": levels[-1] if levels else 0,
        "changes": [{"who": w, "reason": r, "count": n} for (w, r), n in who.most_common()],
        "shield_interventions": len(shield), "suds": [(s["t"], s["value"]) for s in suds],
        "ended": info.meta.get("end_reason") or "incomplete",
    }
