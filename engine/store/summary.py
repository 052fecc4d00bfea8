"""What happened in a session, from its log: for the demo and for reports."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from engine.store.files import SessionReader


def _without_prefix(reason: str, who: str) -> str:
    """"policy: step up" said by the policy reads "step up" after "policy:"."""
    return reason[len(who) + 2:] if reason.startswith(f"{who}: ") else reason


def _json_reason(detail) -> str:
    try:
        return str(json.loads(detail).get("reason", "?"))
    except (TypeError, ValueError, AttributeError):
        return "?"


def summarize(path: Path) -> dict:
    """What happened in a session, from its log: for the demo and for reports."""
    with SessionReader(path) as r:
        info = r.info()
        feats = r.records("features")
        decisions = r.records("decisions")
        shield = [e for e in r.records("events") if e["kind"] == "shield"]
        suds = r.records("suds")
        scene = r.records("scene")
        # a fact drawn from a damaged table cannot be established: None, listed in "unknown"
        unsure = {t: r.unsure(t) for t in ("meta", "features", "decisions", "events", "suds", "scene", "samples")}
        problems = list(r.problems)
    hr = [f["hr"] for f in feats if f["hr"] is not None and not f["lost"]]
    base = next((f["baseline"] for f in reversed(feats) if f["baseline"] is not None), None)
    levels = [s["level"] for s in scene]
    names = info.meta.get("hierarchy", {}).get("levels", [])
    top = max(levels) if levels else 0
    who = Counter((d["who"], _without_prefix(str(d["reason"]), str(d["who"])))
                  for d in decisions if d["target_before"] != d["target_after"])
    shield_why = Counter(str(e["detail"].get("reason") if isinstance(e["detail"], dict) else
                             _json_reason(e["detail"])) for e in shield)
    out = {
        "id": info.id, "path": str(info.path), "patient": info.meta.get("patient"),
        "scene": info.meta.get("scene"), "controller": info.meta.get("controller"),
        "duration_s": info.duration_s, "samples": info.counts.get("samples", 0),
        "baseline_hr": base, "peak_hr": max(hr) if hr else None,
        "top_level": top, "top_level_name": names[top][0] if isinstance(top, int) and top < len(names) else None,
        "final_level": levels[-1] if levels else 0,
        "changes": [{"who": w, "reason": r, "count": n} for (w, r), n in who.most_common()],
        "shield_interventions": len(shield), "shield_reasons": dict(shield_why.most_common()),
        "suds": [(s["t"], s["value"]) for s in suds],
        "ended": info.meta.get("end_reason") or "incomplete",
        "no_signal_s": info.meta.get("no_signal_s"), "no_signal": info.meta.get("no_signal") or "",
        "problems": problems,
    }
    from_table = {"features": ("baseline_hr", "peak_hr"), "scene": ("top_level", "top_level_name", "final_level"),
                  "decisions": ("changes",), "events": ("shield_interventions", "shield_reasons"), "suds": ("suds",),
                  "samples": ("samples",), "meta": ("duration_s", "ended", "no_signal_s", "no_signal")}
    unknown = [k for t, keys in from_table.items() if unsure[t] for k in keys]
    for k in unknown:
        out[k] = None
    out["unknown"] = unknown
    return out
