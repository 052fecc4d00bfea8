// Exposure therapist console. Plain JavaScript, no build step, no third-party code.
//
// The token arrives in the URL fragment (#token=…), which the browser never sends to the server.
// It is kept in sessionStorage (this tab only) and the fragment is removed from the address bar.
// Every request carries it as "Authorization: Bearer TOKEN"; the WebSocket offers it as the
// subprotocol "bearer.TOKEN" because browsers cannot set headers on a WebSocket.
"use strict";

(() => {
  const KEY = "exposure-console-token";
  const WS_PROTO = "exposure-console.v1";
  const $ = (id) => document.getElementById(id);

  let token = null;
  let info = null;
  let state = null;
  let ws = null;
  let ended = false;
  let retry = 0;
  let winS = 900;
  let mirrorTimer = null;
  let mirrorUrl = null;
  // history: parallel arrays, session seconds
  const H = { t: [], bpm: [], base: [], intensity: [], target: [], level: [], mode: [] };
  const marks = []; // {t, who}
  const seenChanges = new Set();

  // ------------------------------------------------------------------ token
  function readToken() {
    const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
    if (m) {
      sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(KEY);
  }

  function lock(msg) {
    sessionStorage.removeItem(KEY);
    token = null;
    if (ws) { try { ws.close(); } catch (e) { /* already closed */ } }
    $("app").hidden = true;
    $("locked").hidden = false;
    $("locked-msg").textContent = msg || "";
    setLink("offline", "Locked");
    $("btn-stop").disabled = true;
  }

  // ------------------------------------------------------------------ API
  async function api(path, opts = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + token }, opts.headers || {});
    const r = await fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
    if (r.status === 401) { lock("The token was refused. It changes with every session."); throw new Error("unauthorized"); }
    return r;
  }

  async function send(cmd, label) {
    const st = $("cmd-status");
    st.className = "cmd-status";
    st.textContent = (label || cmd.type) + " … sending";
    try {
      const r = await api("/api/command", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(cmd),
      });
      const body = await r.json().catch(() => ({}));
      if (r.status === 202) {
        st.className = "cmd-status ok";
        st.textContent = `${label || cmd.type}: sent ${clock()} — applied at the next tick`;
        st.dataset.last = cmd.type;
        return true;
      }
      st.className = "cmd-status err";
      st.textContent = `${label || cmd.type}: refused (${r.status}) — ${body.detail || r.statusText}`;
    } catch (e) {
      if (e.message !== "unauthorized") {
        st.className = "cmd-status err";
        st.textContent = `${label || cmd.type}: not sent — ${e.message}`;
      }
    }
    return false;
  }

  // ------------------------------------------------------------------ WebSocket
  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(proto + location.host + "/ws", [WS_PROTO, "bearer." + token]);
    ws.onopen = () => { retry = 0; setLink("live", "Live"); };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "hello") onHello(m);
      else if (m.type === "state") onState(m.state);
      else if (m.type === "end") { onState(m.state); onEnd(m.state); }
    };
    ws.onclose = () => {
      ws = null;
      if (ended || !token) return;
      setLink("offline", "Reconnecting…");
      // a refused WebSocket looks like any other failure: ask the API whether the token still works
      api("/api/state").then((r) => r.json()).then((s) => {
        onState(s);
        if (s.mode === "stopped") onEnd(s);
      }).catch(() => {
        if (token) banner("The session is not reachable. It may have ended, or the computer running it is busy.", "error");
      });
      retry = Math.min(retry + 1, 6);
      setTimeout(() => { if (!ended && token) connect(); }, 300 * 2 ** retry);
    };
  }

  function setLink(kind, text) {
    $("link").dataset.state = kind;
    $("link-text").textContent = text;
  }

  function banner(text, kind) {
    const b = $("banner");
    b.hidden = !text;
    b.className = "banner" + (kind ? " " + kind : "");
    b.textContent = text || "";
  }

  // ------------------------------------------------------------------ rendering
  function onHello(m) {
    info = m.session;
    $("m-session").textContent = info.id;
    $("m-patient").textContent = info.patient;
    $("m-scene").textContent = `${info.scene} — ${info.hierarchy}`;
    $("m-controller").textContent = info.controller;
    document.title = `Console · ${info.patient} · ${info.scene}`;
    const sel = $("sel-level");
    sel.textContent = "";
    info.levels.forEach(([name, x], i) => {
      const o = document.createElement("option");
      o.value = String(i);
      o.textContent = `${i} · ${name} (${Math.round(x * 100)}%)`;
      sel.appendChild(o);
    });
    const ev = $("events");
    ev.textContent = "";
    info.event_kinds.forEach((k) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = "btn"; b.textContent = k; b.id = "btn-event-" + k;
      b.addEventListener("click", () => send({ type: "event", kind: k }, "event " + k));
      ev.appendChild(b);
    });
    for (const k in H) H[k].length = 0;
    marks.length = 0;
    seenChanges.clear();
    const f = m.fields;
    const ix = (n) => f.indexOf(n);
    for (const p of m.history) push(p[ix("t")], p[ix("bpm")], p[ix("baseline")], p[ix("intensity")], p[ix("target")], p[ix("level")], p[ix("mode")]);
    $("changes").textContent = "";
    for (const c of m.changes) addChange(c);
    $("app").hidden = false;
    $("locked").hidden = true;
    draw();
  }

  function push(t, bpm, base, x, tgt, lv, mode) {
    const n = H.t.length;
    if (n && t <= H.t[n - 1]) return;
    H.t.push(t); H.bpm.push(bpm); H.base.push(base); H.intensity.push(x); H.target.push(tgt);
    H.level.push(lv); H.mode.push(mode);
  }

  function fmtT(t) {
    if (t == null) return "—";
    t = Math.max(0, Math.floor(t));
    const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
    const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }
  function clock() { return new Date().toLocaleTimeString(); }
  function num(x, d = 0) { return x == null ? "—" : x.toFixed(d); }

  function addChange(c) {
    const key = `${c.t}|${c.who}|${c.reason}`;
    if (seenChanges.has(key)) return;
    seenChanges.add(key);
    marks.push({ t: c.t, who: c.who });
    const tr = document.createElement("tr");
    const lv = info ? info.levels[c.level_after] : null;
    tr.innerHTML = "<td></td><td><span class='who'></span></td><td></td><td></td>";
    tr.children[0].textContent = fmtT(c.t);
    tr.children[1].firstChild.textContent = c.who;
    tr.children[1].firstChild.dataset.who = c.who;
    tr.children[2].textContent = c.reason;
    tr.children[3].textContent = `${c.level_after}`;
    if (lv) tr.title = lv[0];
    const tb = $("changes");
    tb.insertBefore(tr, tb.firstChild);
    while (tb.children.length > 100) tb.removeChild(tb.lastChild);
  }

  function onState(s) {
    if (!s) return;
    state = s;
    push(s.t, s.bpm, s.baseline, s.intensity, s.target, s.level, s.mode);
    $("m-elapsed").textContent = fmtT(s.t) + (info ? ` / ${fmtT(info.planned_duration_s)}` : "");
    $("v-bpm").textContent = num(s.bpm);
    $("v-baseline").textContent = num(s.baseline);
    const dl = s.hr_delta == null ? null : Math.round(s.hr_delta);
    $("v-delta").textContent = dl == null ? "—" : (dl >= 0 ? "+" : "−") + Math.abs(dl);
    $("v-rmssd").textContent = num(s.rmssd);
    const q = s.quality == null ? null : Math.round(s.quality * 100);
    $("v-quality").textContent = q == null ? "—" : String(q);
    const bar = $("v-quality-bar");
    bar.style.width = (q || 0) + "%";
    bar.className = q != null && q < 50 ? "poor" : "";
    const con = $("v-connection");
    con.textContent = s.connection;
    con.className = "pill " + ({ streaming: "ok", connected: "ok", lost: "bad", reconnecting: "warn", connecting: "warn" }[s.connection] || "");
    $("v-lost").hidden = !s.lost;
    $("v-level").textContent = String(s.level);
    $("v-nlevels").textContent = `/ ${s.n_levels - 1}`;
    $("v-intensity").textContent = num(s.intensity * 100);
    $("v-level-name").textContent = s.level_name + (Math.abs(s.target - s.intensity) > 1e-3 ? ` → target ${num(s.target * 100)}%` : "");
    const mb = $("v-mode");
    mb.textContent = s.mode;
    mb.dataset.mode = s.mode;
    $("v-mode-sub").textContent = {
      auto: `${info ? info.controller : "controller"} drives`,
      manual: "therapist drives", hold: "intensity held", paused: `calm scene, by ${pausedBy(s)}`,
      stopped: s.end_reason || "session over",
    }[s.mode] || "";
    const d = s.last_decision;
    if (d) {
      const who = $("d-who");
      who.textContent = d.who; who.dataset.who = d.who;
      $("d-reason").textContent = d.reason;
      const lv = info ? info.levels[d.level_after][0] : "";
      $("d-when").textContent = `${fmtT(d.t)} · → level ${d.level_after}${lv ? " (" + lv + ")" : ""}`;
      addChange(d);
    }
    renderSuds(s);
    renderShield(s);
    renderCommands(s);
    renderControls(s);
    mirror(s.mirror);
    draw();
    if (s.mode === "stopped") onEnd(s);
  }

  function pausedBy(s) {
    const p = (s.commands_recent || []).filter((c) => c.type === "pause" && c.accepted).pop();
    return p ? p.origin : "—";
  }

  function describe(c) {
    const p = c.payload || {};
    switch (c.type) {
      case "set_level": return `set level ${p.level}` + (info && info.levels[p.level] ? ` (${info.levels[p.level][0]})` : "");
      case "set_intensity": return `set intensity ${Math.round(p.intensity * 100)}%`;
      case "suds": return `SUDS ${p.value}`;
      case "ask_suds": return "ask for SUDS";
      case "event": return `event: ${p.kind}`;
      case "annotate": return `note: “${p.text}”`;
      default: return c.type;
    }
  }

  function renderCommands(s) {
    const tb = $("commands");
    tb.textContent = "";
    const rows = (s.commands_recent || []).slice().reverse();
    for (const c of rows) {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td><span class='who'></span></td><td></td><td></td>";
      tr.children[0].textContent = fmtT(c.t);
      tr.children[1].firstChild.textContent = c.origin;
      tr.children[1].firstChild.dataset.who = c.origin;
      tr.children[2].textContent = describe(c);
      tr.children[3].textContent = c.accepted ? "applied" : `refused: ${c.error}`;
      if (!c.accepted) tr.children[3].className = "refused";
      tb.appendChild(tr);
    }
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td colspan='3' class='muted'>none yet</td>";
      tb.appendChild(tr);
    }
  }

  function renderSuds(s) {
    $("suds-pending").hidden = !s.suds_pending;
    const tb = $("suds");
    tb.textContent = "";
    for (const r of s.suds.slice().reverse()) {
      const tr = document.createElement("tr");
      for (const v of [fmtT(r.t), num(r.value), String(r.level), r.origin]) {
        const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
      }
      tb.appendChild(tr);
    }
    if (!s.suds.length) {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td colspan='3' class='muted'>none yet</td>";
      tb.appendChild(tr);
    }
  }

  function renderShield(s) {
    const counts = s.shield || {};
    let total = 0;
    const ul = $("shield-counts");
    ul.textContent = "";
    for (const [why, n] of Object.entries(counts)) {
      total += n;
      const li = document.createElement("li");
      li.innerHTML = "<span></span><b></b>";
      li.children[0].textContent = why; li.children[1].textContent = String(n);
      ul.appendChild(li);
    }
    if (!total) { const li = document.createElement("li"); li.className = "muted"; li.textContent = "no interventions"; ul.appendChild(li); }
    $("shield-total").textContent = String(total);
    $("shield-total").className = "pill" + (total ? " warn" : "");
    const tb = $("shield-recent");
    tb.textContent = "";
    for (const r of (s.shield_recent || []).slice(-5).reverse()) {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td></td>";
      tr.children[0].textContent = fmtT(r.t);
      tr.children[1].textContent = `${r.reason} (proposed ${r.proposed >= 0 ? "+" : ""}${num(r.proposed * 100, 1)}%, allowed ${r.allowed >= 0 ? "+" : ""}${num(r.allowed * 100, 1)}%)`;
      tb.appendChild(tr);
    }
  }

  function renderControls(s) {
    const stopped = s.mode === "stopped";
    const paused = s.mode === "paused";
    for (const id of ["btn-auto", "btn-manual", "btn-hold"]) {
      const b = $(id);
      b.disabled = stopped;
      b.setAttribute("aria-pressed", String(b.dataset.cmd === s.mode));
    }
    $("btn-pause").disabled = stopped || paused;
    $("btn-resume").disabled = !paused;
    for (const id of ["sel-level", "btn-level", "rng-intensity", "btn-intensity", "in-suds", "btn-suds",
      "btn-ask", "in-note", "btn-note"]) $(id).disabled = stopped;
    for (const b of $("events").children) b.disabled = stopped || paused;
    $("btn-stop").disabled = stopped;
    if (document.activeElement !== $("sel-level") && !$("sel-level").dataset.touched) $("sel-level").value = String(s.level);
    if (!$("rng-intensity").dataset.touched) {
      $("rng-intensity").value = String(Math.round(s.target * 100));
      $("out-intensity").textContent = Math.round(s.target * 100) + "%";
    }
  }

  function onEnd(s) {
    if (ended) return;
    ended = true;
    setLink("ended", "Session ended");
    banner(`Session ended at ${fmtT(s.t)}: ${s.end_reason || "stopped"}. The log is saved; this page no longer controls anything.`, "ended");
    $("stop-confirm").hidden = true;
    renderControls(Object.assign({}, s, { mode: "stopped" }));
    if (mirrorTimer) { clearInterval(mirrorTimer); mirrorTimer = null; }
  }

  // ------------------------------------------------------------------ mirror
  function mirror(on) {
    $("mirror").hidden = !on;
    $("mirror-none").hidden = !!on;
    $("mirror-none").textContent = info && info.display === "none" ? "No rendered scene (display: none)" : "No image yet";
    if (on && !mirrorTimer) mirrorTimer = setInterval(fetchMirror, 400);
    if (!on && mirrorTimer) { clearInterval(mirrorTimer); mirrorTimer = null; }
  }
  async function fetchMirror() {
    try {
      const r = await api("/api/mirror.png");
      if (r.status !== 200) return;
      const url = URL.createObjectURL(await r.blob());
      $("mirror").src = url;
      if (mirrorUrl) URL.revokeObjectURL(mirrorUrl);
      mirrorUrl = url;
    } catch (e) { /* next time */ }
  }

  // ------------------------------------------------------------------ chart
  function draw() {
    const cv = $("chart");
    const dpr = window.devicePixelRatio || 1;
    const W = cv.clientWidth, Hh = cv.clientHeight;
    if (!W || !Hh) return;
    if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(Hh * dpr)) {
      cv.width = Math.round(W * dpr); cv.height = Math.round(Hh * dpr);
    }
    const g = cv.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, Hh);
    const css = getComputedStyle(document.documentElement);
    const col = (n) => css.getPropertyValue(n).trim();
    const L = 46, R = 170, T = 18, B = 22, GAP = 26;
    const pw = W - L - R;
    const h1 = Math.round((Hh - T - B - GAP) * 0.58), h2 = Hh - T - B - GAP - h1;
    const y1 = T, y2 = T + h1 + GAP;
    const n = H.t.length;
    const tEnd = n ? H.t[n - 1] : 0;
    const tStart = winS ? Math.max(0, tEnd - winS) : (n ? H.t[0] : 0);
    const span = Math.max(winS || tEnd - tStart, 1);
    const tx = (t) => L + ((t - tStart) / span) * pw;
    let i0 = 0;
    while (i0 < n && H.t[i0] < tStart) i0++;

    // HR range
    let lo = Infinity, hi = -Infinity;
    for (let i = i0; i < n; i++) for (const v of [H.bpm[i], H.base[i]]) if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!isFinite(lo)) { lo = 60; hi = 100; }
    lo = Math.floor((lo - 5) / 10) * 10; hi = Math.ceil((hi + 5) / 10) * 10;
    if (hi - lo < 30) hi = lo + 30;
    const hy = (v) => y1 + h1 - ((v - lo) / (hi - lo)) * h1;
    const iy = (v) => y2 + h2 - v * h2;

    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "middle";
    // panels
    g.fillStyle = "#fbfcfd";
    g.fillRect(L, y1, pw, h1); g.fillRect(L, y2, pw, h2);
    // paused shading
    g.fillStyle = "rgba(46,125,107,0.13)";
    for (let i = Math.max(i0, 1); i < n; i++) {
      if (H.mode[i] !== "paused") continue;
      let j = i;
      while (j + 1 < n && H.mode[j + 1] === "paused") j++;
      const a = Math.max(L, tx(H.t[i - 1])), b = tx(H.t[j]);
      g.fillRect(a, y1, b - a, h1); g.fillRect(a, y2, b - a, h2);
      i = j;
    }
    // grid + axes labels
    g.strokeStyle = "#e3e8ee"; g.lineWidth = 1; g.fillStyle = col("--muted");
    g.textAlign = "right";
    for (let v = lo; v <= hi; v += (hi - lo > 60 ? 20 : 10)) {
      const y = Math.round(hy(v)) + 0.5;
      g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
      g.fillText(String(v), L - 6, y);
    }
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      const y = Math.round(iy(v)) + 0.5;
      g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
      g.fillText(Math.round(v * 100) + "%", L - 6, y);
    }
    // level lines, and level names on the right of the intensity panel (the current one always)
    if (info) {
      g.textAlign = "left";
      const cur = state ? state.level : -1;
      const shown = [];
      const order = info.levels.map((_, i) => i).sort((a, b) => (b === cur) - (a === cur));
      for (const i of order) {
        const y = iy(info.levels[i][1]);
        if (shown.every((o) => Math.abs(o.y - y) >= 13)) shown.push({ i, y });
      }
      info.levels.forEach(([, x]) => {
        const y = Math.round(iy(x)) + 0.5;
        g.strokeStyle = "#eef1f4"; g.setLineDash([2, 3]);
        g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
        g.setLineDash([]);
      });
      for (const { i, y } of shown) {
        const label = `${i} ${info.levels[i][0]}`;
        g.fillStyle = i === cur ? col("--int") : col("--muted");
        g.font = i === cur ? "600 11px system-ui, sans-serif" : "11px system-ui, sans-serif";
        g.fillText(label.length > 25 ? label.slice(0, 24) + "…" : label, L + pw + 8, y);
      }
      g.font = "11px system-ui, sans-serif";
    }
    g.textAlign = "left"; g.fillStyle = col("--muted");
    g.fillText("heart rate (bpm)", L, y1 - 9);
    g.fillText("intensity and level", L, y2 - 9);
    // time axis
    g.textAlign = "center"; g.textBaseline = "top";
    const step = [30, 60, 120, 300, 600, 900, 1800, 3600].find((s) => span / s <= 8) || 3600;
    for (let t = Math.ceil(tStart / step) * step; t <= tStart + span; t += step) {
      const x = Math.round(tx(t)) + 0.5;
      g.strokeStyle = "#eef1f4";
      g.beginPath(); g.moveTo(x, y1); g.lineTo(x, y1 + h1); g.moveTo(x, y2); g.lineTo(x, y2 + h2); g.stroke();
      g.fillText(fmtT(t), x, y2 + h2 + 5);
    }
    // change markers
    for (const m of marks) {
      if (m.t < tStart || (m.who !== "shield" && m.who !== "therapist")) continue;
      const x = Math.round(tx(m.t)) + 0.5;
      g.strokeStyle = m.who === "shield" ? col("--warn") : col("--ther");
      g.lineWidth = 1.5;
      g.beginPath(); g.moveTo(x, y2); g.lineTo(x, y2 + h2); g.stroke();
    }
    // series
    const line = (arr, y, color, dash, width) => {
      g.strokeStyle = color; g.lineWidth = width; g.setLineDash(dash);
      g.beginPath();
      let pen = false;
      for (let i = i0; i < n; i++) {
        const v = arr[i];
        if (v == null) { pen = false; continue; }
        const x = tx(H.t[i]), yy = y(v);
        if (pen) g.lineTo(x, yy); else g.moveTo(x, yy);
        pen = true;
      }
      g.stroke(); g.setLineDash([]);
    };
    line(H.base, hy, col("--base"), [5, 4], 1.5);
    line(H.bpm, hy, col("--hr"), [], 2);
    line(H.target, iy, col("--int"), [5, 4], 1.2);
    line(H.intensity, iy, col("--int"), [], 2);
    // frames
    g.strokeStyle = "#c9d2dc"; g.lineWidth = 1;
    g.strokeRect(L + 0.5, y1 + 0.5, pw - 1, h1 - 1); g.strokeRect(L + 0.5, y2 + 0.5, pw - 1, h2 - 1);
  }

  // ------------------------------------------------------------------ wiring
  function wire() {
    for (const b of document.querySelectorAll("[data-cmd]")) {
      b.addEventListener("click", () => send({ type: b.dataset.cmd }));
    }
    $("btn-stop").addEventListener("click", () => { $("stop-confirm").hidden = false; $("btn-stop-confirm").focus(); });
    $("btn-stop-cancel").addEventListener("click", () => { $("stop-confirm").hidden = true; });
    $("btn-stop-confirm").addEventListener("click", async () => {
      $("stop-confirm").hidden = true;
      await send({ type: "stop" });
    });
    $("sel-level").addEventListener("change", () => { $("sel-level").dataset.touched = "1"; });
    $("btn-level").addEventListener("click", async () => {
      const lv = Number($("sel-level").value);
      delete $("sel-level").dataset.touched;
      await send({ type: "set_level", level: lv }, `level ${lv}`);
    });
    $("rng-intensity").addEventListener("input", () => {
      $("rng-intensity").dataset.touched = "1";
      $("out-intensity").textContent = $("rng-intensity").value + "%";
    });
    $("btn-intensity").addEventListener("click", async () => {
      const v = Number($("rng-intensity").value) / 100;
      delete $("rng-intensity").dataset.touched;
      await send({ type: "set_intensity", intensity: v }, `intensity ${Math.round(v * 100)}%`);
    });
    $("btn-suds").addEventListener("click", async () => {
      const raw = $("in-suds").value.trim();
      const v = Number(raw);
      if (raw === "" || !Number.isFinite(v) || v < 0 || v > 100) {
        const st = $("cmd-status"); st.className = "cmd-status err"; st.textContent = "SUDS must be a number from 0 to 100";
        return;
      }
      if (await send({ type: "suds", value: v }, `SUDS ${v}`)) $("in-suds").value = "";
    });
    $("btn-note").addEventListener("click", async () => {
      const text = $("in-note").value.trim();
      if (!text) return;
      if (await send({ type: "annotate", text }, "note")) $("in-note").value = "";
    });
    $("in-note").addEventListener("keydown", (e) => { if (e.key === "Enter") $("btn-note").click(); });
    for (const b of document.querySelectorAll("[data-win]")) {
      b.addEventListener("click", () => {
        winS = Number(b.dataset.win);
        for (const o of document.querySelectorAll("[data-win]")) o.classList.toggle("on", o === b);
        draw();
      });
    }
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const v = $("token-input").value.trim();
      if (!v) return;
      sessionStorage.setItem(KEY, v);
      $("token-input").value = "";
      start();
    });
    window.addEventListener("resize", draw);
  }

  async function start() {
    token = readToken();
    if (!token) { lock(""); return; }
    try {
      const r = await api("/api/state");
      if (!r.ok) throw new Error("HTTP " + r.status);
    } catch (e) {
      if (token) banner("The session is not reachable: " + e.message, "error");
      return;
    }
    $("locked").hidden = true;
    connect();
    startCourse();
  }

  // ------------------------------------------------------------------ course panel
  // The patient's sessions so far in this course and where this one started (GET /api/course);
  // refreshed every few seconds (this session's row changes as it runs).
  let courseTimer = null;

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function renderCourse(c) {
    $("course-id").textContent = c.anonymous ? "no course" : "session " + c.index;
    $("course-start").textContent = "Started at level " + c.start_level + " (" + c.start_level_name + ")";
    $("course-why").textContent = "— " + c.start_reason;
    const tb = $("course-sessions");
    tb.textContent = "";
    for (const r of c.sessions) {
      const tr = document.createElement("tr");
      if (r.current) tr.className = "current";
      cell(tr, String(r.index));
      cell(tr, r.current ? "now" : (r.date || "—").slice(0, 16).replace("T", " "));
      cell(tr, num(r.minutes, 1), "num");
      cell(tr, r.start_level + " → " + r.highest_level, "num");
      cell(tr, num(r.peak_suds), "num");
      cell(tr, r.peak_hr_rise == null ? "—" : "+" + num(r.peak_hr_rise) + " bpm", "num");
      cell(tr, r.return_of_fear == null ? "—" : (r.return_of_fear > 0 ? "+" : "") + num(r.return_of_fear), "num");
      cell(tr, r.ended);
      tb.appendChild(tr);
    }
    const w = $("course-warn");
    w.hidden = !c.warnings.length;
    w.textContent = c.warnings.join(" · ");
  }

  async function loadCourse() {
    if (!token) return;
    try {
      const r = await api("/api/course");
      if (r.ok) renderCourse(await r.json());
    } catch (e) { /* the next refresh tries again; the banner reports a lost session */ }
  }

  function startCourse() {
    loadCourse();
    if (courseTimer === null) courseTimer = setInterval(loadCourse, 5000);
  }
  // ------------------------------------------------------------------ end course panel

  wire();
  start();
})();
