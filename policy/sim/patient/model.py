"""The virtual patient: pure, vectorised step functions over L patients (1 s per step).

Shared by the ``sim://`` source (L = 1), the gymnasium env and the evaluator (L = thousands;
several controllers side by side see the same patients with the same random numbers). Every
function takes explicit arrays and returns new ones; all randomness comes from
:mod:`.noise`, keyed by (patient, session, second, channel).

Hidden state per patient (see shared/PATIENT_MODEL.md):
  V(u)  original fear association, logistic in the effective intensity u (severity, midpoint, slope)
  I     safety memory (``State.safety``): inhibition share in [0, 1) over intensity bins; learned at a rate shaped as
        an inverted U around the optimal arousal; partly lost between sessions; what was learned at an
        intensity acts at every lower one too (:func:`generalised`)
  A     current fear (SUDS scale), towards presence·V(u)·(1 − I(u))·(1 − H) + S, faster up than down
  H     within-session habituation to what is shown, over intensity bins (resets between sessions)
  S     sensitisation above the overwhelm threshold (erodes the safety memory); an escape hazard
        grows steeply near the escape threshold
  cs    cybersickness (time × intensity, plus a part that rises with anxiety alone)
Observable: heart rate (resting + gain·concordance·A + a fear-independent scene response + drift,
lagging), RR intervals with breathing-driven variation and artefacts, what a chest strap or an
optical sensor reports (contact, Bluetooth dropouts, lag, noise), the share of time looking
down/away, and SUDS when asked (biased, noisy, rounded to 5, costs immersion).

Structures (``structure``): ``full``; ``habituation-only`` (learning only as habituation
accrues); ``inhibitory-flat`` (learning at any arousal, no inverted U); ``no-sensitisation``;
``abrupt-no-transfer`` (learning does not generalise across intensities, neither up nor down,
and is blocked right after an abrupt rise). Calibration against published outcomes:
``policy/sim/calibrate.py`` and docs/calibration.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from policy.errors import PolicyError
from policy.sim.patient import noise
from policy.sim.patient.population import STRUCTURES, Population
from policy.sim.patient.scene_table import FEATURES, felt, scene_weights

BINS = np.linspace(0.0, 1.0, 6)  # safety-memory bins over effective intensity
_NB = len(BINS) - 1
LN2 = 0.6931471805599453
WINDOW_HALF = 15.0  # therapeutic window: optimal arousal ± 15 (capped below overwhelm)
# the share of the safety memory that transfers to the post-test context (renewal) is per patient:
# the population's ``context_transfer`` prior (docs/calibration.md)
H_MAX = 0.7
BIAS_FULL_AT = 20.0  # fear at which a patient's personal SUDS bias acts in full
EARLY_SESSIONS = 2  # the disengagement dropout route acts at the end of the first two sessions only
# inverted U of the learning rate around the optimal arousal (SD below, above it): wide below, since
# the fear level during exposure predicts outcome only weakly (Rupp 2017; Baker 2010); narrow above
U_BELOW, U_ABOVE = 30.0, 12.0
# noise: per second one block of uniforms (columns below); normals by Box–Muller pairs
(U_ESCAPE, U_ART, U_BT, U_BTLEN, U_GAP) = range(5)
N_UNIFORM = 13  # 5 uniforms + 4 pairs → fear, look, hr, bpm, rr0, rr1, rr2 (+ one spare)
CH_SECOND, CH_SUDS, CH_DROP, CH_SCENE = 0x5EC, 0x5D5, 0xD80, 0x5CE


class ModelError(PolicyError, ValueError):
    """Bad arguments to the model (unknown structure, scene or sensor)."""


@dataclass(frozen=True)
class Params:
    """Per-patient parameters (arrays over L lanes) and the population-wide settings."""

    keys: np.ndarray  # (N,) noise keys of the distinct patients; lanes are N·rep, patient-major tiles
    rep: int
    scene: str
    structure: str
    sensor: str
    p: dict  # name → (L,) array
    weights: np.ndarray  # (L, F)
    max_hr: np.ndarray  # (L,) true max HR, 208 − 0.7·age
    dropout_per_s: float = 0.0004  # Bluetooth dropout starts per second

    @property
    def n(self) -> int:
        return len(self.keys) * self.rep

    def __getattr__(self, name):  # parameter arrays as attributes
        try:
            return self.__dict__["p"][name]
        except KeyError:
            raise AttributeError(name) from None


def make_params(pop: Population, keys: np.ndarray, scene: str, rep: int = 1,
                structure: str | None = None, sensor: str | None = None,
                dropout_per_s: float = 0.0004) -> Params:
    """Draw the parameters of the patients with ``keys``; ``rep`` copies side by side (lane = r·N + i)."""
    structure = structure or pop.structure
    sensor = sensor or pop.sensor
    if structure not in STRUCTURES:
        raise ModelError(f"unknown structure {structure!r}: choose one of {', '.join(STRUCTURES)}")
    if scene not in FEATURES:
        raise ModelError(f"unknown scene {scene!r}: choose {' or '.join(FEATURES)}")
    if sensor not in ("chest", "optical"):
        raise ModelError(f"unknown sensor {sensor!r}: choose chest or optical")
    keys = np.asarray(keys, dtype=np.uint64)
    d = pop.draw(keys)
    nf = len(FEATURES[scene])
    z = np.stack([noise.normal(keys, 0xC0DE, CH_SCENE, j) for j in range(nf)], axis=1)
    w = scene_weights(scene, z, d["scene_weight_sigma"])
    d["escape"] = np.maximum(d["escape"], d["overwhelm"] + 2.0)
    t = (lambda x: np.tile(x, rep)) if rep > 1 else (lambda x: x)
    p = {k: t(v) for k, v in d.items()}
    w = np.tile(w, (rep, 1)) if rep > 1 else w
    return Params(keys, rep, scene, structure, sensor, p, w, 208.0 - 0.7 * p["age"], dropout_per_s)


@dataclass(frozen=True)
class State:
    """Hidden state of L patients. Course-long fields survive :func:`next_session`."""

    A: np.ndarray
    H: np.ndarray
    S: np.ndarray
    safety: np.ndarray  # (L, bins)
    cs: np.ndarray
    hr: np.ndarray
    hr_opt: np.ndarray  # what an optical sensor sees (lagging)
    phase: np.ndarray  # beat phase
    look: np.ndarray  # share of time looking away (smoothed)
    dip: np.ndarray  # immersion lost to a SUDS question
    u_slow: np.ndarray  # slow average of u (abrupt steps)
    escaped: np.ndarray  # bool: left VR this session
    drop_until: np.ndarray  # sensor silent until this second
    sess_over_s: np.ndarray
    sess_fear_sum: np.ndarray
    sess_vr_s: np.ndarray
    dropped: np.ndarray  # bool: left the course
    avoid: np.ndarray  # reinforced avoidance from escapes (adds to the fear association)


@dataclass(frozen=True)
class Reading:
    """What one second produced: the sensor's report, behaviour, and hidden outcomes."""

    bpm: np.ndarray  # NaN: no notification this second
    rr: np.ndarray  # (L, 3) ms, NaN-padded
    contact: np.ndarray  # int8: 1, 0, or −1 (not reported)
    look_away: np.ndarray
    fear: np.ndarray
    overwhelm: np.ndarray  # bool: fear above threshold or HR above 85% of the true max
    in_window: np.ndarray  # bool
    escaped_now: np.ndarray  # bool
    in_vr: np.ndarray  # bool


def initial_state(p: Params) -> State:
    n = p.n
    z = np.zeros(n)
    return State(A=z.copy(), H=np.zeros((n, len(BINS))), S=z.copy(), safety=np.zeros((n, len(BINS))),
                 cs=z.copy(),
                 hr=p.rest_hr.copy(), hr_opt=p.rest_hr.copy(), phase=z.copy(), look=z.copy(),
                 dip=z.copy(), u_slow=z.copy(), escaped=np.zeros(n, bool), drop_until=z.copy(),
                 sess_over_s=z.copy(), sess_fear_sum=z.copy(), sess_vr_s=z.copy(),
                 dropped=np.zeros(n, bool), avoid=z.copy())


def _draw(p: Params, fn, *counter) -> np.ndarray:
    x = fn(p.keys, *counter)
    return np.tile(x, p.rep) if p.rep > 1 else x


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def association(p: Params, u: np.ndarray, avoid: np.ndarray | float = 0.0) -> np.ndarray:
    """V(u): fear the patient associates with effective intensity u, 0..100 (0 at u = 0)."""
    k, m = p.slope, p.midpoint
    s0 = _sig(-k * m)
    v = (_sig(k * (u - m)) - s0) / (1.0 - s0)
    return np.minimum(100.0, 110.0 * (p.severity + avoid) * v)


def _bin_pos(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.clip(u, 0.0, 1.0) * _NB
    j = np.minimum(x.astype(np.int64), _NB - 1)
    return np.arange(len(u)), j, x - j


def _interp_at(arr: np.ndarray, pos) -> np.ndarray:
    r, j, w = pos
    return arr[r, j] * (1.0 - w) + arr[r, j + 1] * w


def _interp_bins(arr: np.ndarray, u: np.ndarray) -> np.ndarray:
    return _interp_at(arr, _bin_pos(u))


def generalised(safety: np.ndarray) -> np.ndarray:
    """The safety memory as it acts on fear: what was learned at an intensity applies at every
    lower intensity too (downward generalisation: safety learned higher in the hierarchy is not
    lost lower down, which is what a graded hierarchy assumes). Per bin, the largest safety
    learned at that bin or above it: non-increasing in intensity, so fear V(u)·(1 − I(u)) rises
    with u for every patient. (assumed; see docs/calibration.md)"""
    return np.maximum.accumulate(safety[:, ::-1], axis=1)[:, ::-1]


def acting_safety(p: Params, safety: np.ndarray) -> np.ndarray:
    """The safety memory that acts on fear: generalised downward, except under the
    ``abrupt-no-transfer`` structure, where learning transfers to no other intensity."""
    return safety if p.structure == "abrupt-no-transfer" else generalised(safety)


def effective_intensity(p: Params, intensity: np.ndarray, params: dict | None) -> np.ndarray:
    """u the patient feels: from the scene parameters when given (and the hierarchy names the
    parameters the model weighs), else the intensity itself."""
    if params is None or any(f[0] not in params for f in FEATURES[p.scene]):
        return np.clip(np.asarray(intensity, dtype=float), 0.0, 1.0)
    return felt(p.scene, params, p.weights)


def step(p: Params, s: State, u: np.ndarray, asked: np.ndarray, session: int, second: int) -> tuple[State, Reading]:
    """Advance one second. ``u``: effective intensity shown during it; ``asked``: a SUDS
    question is pending (immersion cost). ``second`` counts from 1 in each session."""
    n = p.n
    st = p.structure
    ub = noise.uniform_block(p.keys, N_UNIFORM, CH_SECOND, session, second)
    if p.rep > 1:
        ub = np.tile(ub, (1, p.rep))
    zc, zs = noise.box_muller(ub[5:13:2], ub[6:13:2])  # pairs (5, 6), (7, 8), (9, 10), (11, 12)
    z_fear, z_look, z_hr, z_bpm, z_rr0, z_rr1, z_rr2 = zc[0], zs[0], zc[1], zs[1], zc[2], zs[2], zc[3]
    out_vr = s.escaped | s.dropped
    u = np.where(out_vr, 0.0, u)
    # behaviour: looking down/away rises with fear and lowers what is seen
    la_t = p.look_away_max * _sig((s.A - p.look_away_mid) / 8.0)
    look = np.clip(s.look + (la_t + 0.05 * z_look - s.look) / 20.0,
                   0.0, 1.0)
    seen = u * (1.0 - 0.2 * look)
    dip = np.where(asked, p.suds_cost, s.dip * 0.9355)  # recovers with τ ≈ 15 s
    pres = np.where(out_vr, 0.0, (0.7 + 0.3 * p.presence) * (1.0 - 0.4 * s.cs) * (1.0 - dip))
    V = association(p, seen, s.avoid)
    pos = _bin_pos(seen)
    inhib = _interp_at(acting_safety(p, s.safety), pos)
    hab = _interp_at(s.H, pos)
    drive = np.minimum(100.0, pres * V * (1.0 - inhib) * (1.0 - hab) + s.S)
    tau = np.where(drive > s.A, 8.0, 30.0)
    A = s.A + (drive - s.A) * (1.0 - np.exp(-1.0 / tau)) + 1.0 * z_fear
    A = np.clip(A, 0.0, 100.0)
    # within-session habituation
    k_h = LN2 / (p.habituation_half_life_min * 60.0) * np.where(p.non_habituator > 0.5, 0.1, 1.0)
    # within-session habituation to what is shown, at a constant rate while afraid
    # (Portelo 2021), generalising a little to nearby intensities
    u_slow = s.u_slow + (seen - s.u_slow) / 60.0
    hk = np.exp(-(((BINS[None, :] - seen[:, None]) / 0.1) ** 2))
    H = s.H + (k_h * np.minimum(A / 10.0, 1.0) * pres)[:, None] * hk * (H_MAX - s.H)
    # safety memory
    if st == "inhibitory-flat":
        rate = 0.7 * (A > 10.0)
    elif st == "habituation-only":
        rate = 2.0 * _interp_at(H, pos) * (A > 10.0)
    else:
        # inverted U around the optimal arousal: wide below it, narrow above it
        d = A - p.optimal_arousal
        rate = np.exp(-0.5 * (d / np.where(d < 0.0, U_BELOW, U_ABOVE)) ** 2)
    rate = p.learning_rate * rate * pres
    if st == "abrupt-no-transfer":
        rate = rate * ((seen - u_slow) < 0.08)
        width = 0.06
    else:
        width = 0.15
    kern = np.exp(-(((BINS[None, :] - seen[:, None]) / width) ** 2))
    safety = s.safety + (rate[:, None] * kern) * (1.0 - s.safety)
    # sensitisation above the overwhelm threshold erodes the safety memory
    over_f = np.maximum(A - p.overwhelm, 0.0)
    if st == "no-sensitisation":
        S = s.S
    else:
        S = np.minimum(40.0, s.S * 0.99834 + 0.02 * over_f)  # decays with τ ≈ 10 min
        safety = safety - (0.002 * over_f)[:, None] * kern * safety
    # escape: hazard grows steeply near the escape threshold
    haz = np.minimum(0.5, 0.02 * np.exp((A - p.escape) / 2.5)) * (A > p.escape - 10.0)
    esc_now = ~out_vr & (ub[U_ESCAPE] < haz)
    safety = np.where(esc_now[:, None], safety - 0.15 * kern * safety, safety)
    avoid = s.avoid + 0.03 * esc_now
    escaped = s.escaped | esc_now
    # cybersickness: time × intensity, plus a part driven by anxiety alone
    in_vr = ~out_vr
    cs = np.where(in_vr, s.cs + p.cyber_susceptibility * (0.2 + 0.8 * u + 0.5 * A / 100.0) / 3600.0 * (1.0 - s.cs),
                  s.cs * 0.99)
    # heart
    drift = 1.5 * np.sin(6.283185307179586 * (second / 900.0 + p.severity * 7.0))
    hr_t = p.rest_hr + p.hr_gain * p.concordance * A / 100.0 + p.scene_hr * u + drift
    tau_hr = np.where(hr_t > s.hr, p.hr_tau_up, p.hr_tau_down)
    hr = s.hr + (hr_t - s.hr) * (1.0 - np.exp(-1.0 / tau_hr)) + 0.4 * z_hr
    hr = np.clip(hr, 35.0, 215.0)
    hr_opt = s.hr_opt + (hr - s.hr_opt) * 0.1535  # optical lag, τ ≈ 6 s
    # beats and RR intervals in this second
    ph = s.phase + hr / 60.0
    nb = np.minimum(np.floor(ph) - np.floor(s.phase), 3).astype(np.int64)
    rmssd = p.rmssd_rest * np.exp(-0.8 * A / 100.0 - 0.01 * np.maximum(hr - p.rest_hr, 0.0))
    jit = 3.0 if p.sensor == "chest" else 20.0
    base_rr = 60000.0 / hr
    art = ub[U_ART]
    breath = np.array([np.sin(6.283185307179586 * (second + k / 3.0) / 4.5) for k in range(3)])
    z_rr = np.stack([z_rr0, z_rr1, z_rr2], axis=1)
    x = (base_rr[:, None] + (0.03 * base_rr)[:, None] * breath[None, :]
         + np.sqrt(rmssd ** 2 / 2.0 + jit ** 2)[:, None] * z_rr)
    x[:, 0] = np.where(art < 0.003, 2.0 * x[:, 0], np.where(art > 0.998, 0.5 * x[:, 0], x[:, 0]))  # missed/extra
    rr = np.where(nb[:, None] > np.arange(3)[None, :], np.round(x * 1.024) / 1.024, np.nan)
    # what the sensor reports
    bt = ub[U_BT]
    btlen = ub[U_BTLEN]
    silent = second < s.drop_until
    start = ~silent & (bt < p.dropout_per_s)
    drop_until = np.where(start, second + 2.0 + 58.0 * btlen * btlen, s.drop_until)
    if p.sensor == "optical":
        gap = ~silent & ~start & (ub[U_GAP] < 0.004 * (1.0 + 3.0 * look))
        drop_until = np.where(gap, second + 2.0 + 13.0 * btlen, drop_until)
        start = start | gap
    sent = ~silent & ~start
    e = z_bpm
    if p.sensor == "chest":
        contact_ok = second >= p.contact_delay_s
        bpm = np.where(contact_ok, np.round(hr + 0.5 * e), np.round(hr + 12.0 * e))
        contact = np.where(contact_ok, 1, 0).astype(np.int8)
        rr = np.where(contact_ok[:, None], rr, np.nan)
    else:
        bpm = np.round(hr_opt + 2.5 * e)
        contact = np.full(n, -1, dtype=np.int8)
    bpm = np.where(sent, bpm, np.nan)
    rr = np.where(sent[:, None], rr, np.nan)
    over = in_vr & ((A > p.overwhelm) | (hr > 0.85 * p.max_hr))
    hi_w = np.minimum(p.optimal_arousal + WINDOW_HALF, p.overwhelm)
    win = in_vr & (A >= p.optimal_arousal - WINDOW_HALF) & (A <= hi_w)
    ns = State(A=A, H=H, S=S, safety=np.clip(safety, 0.0, 0.999), cs=cs, hr=hr, hr_opt=hr_opt,
               phase=ph - np.floor(ph),
               look=look, dip=dip, u_slow=u_slow, escaped=escaped, drop_until=drop_until,
               sess_over_s=s.sess_over_s + over, sess_fear_sum=s.sess_fear_sum + np.where(in_vr, A, 0.0),
               sess_vr_s=s.sess_vr_s + in_vr, dropped=s.dropped, avoid=avoid)
    return ns, Reading(bpm, rr, contact, look, A, over, win, esc_now, in_vr)


def suds(p: Params, s: State, session: int, second: int) -> np.ndarray:
    """SUDS answers (0..100 in steps of 5): biased, noisy, rounded. Asking costs immersion
    (see ``asked`` in :func:`step`)."""
    # the personal bias scales with felt fear: with no fear most people answer 0–5, whatever
    # their style of rating (assumed; see docs/calibration.md)
    v = s.A + p.suds_bias * np.minimum(1.0, s.A / BIAS_FULL_AT) + p.suds_noise * _draw(p, noise.normal, session,
                                                                                          second, CH_SUDS)
    return np.clip(5.0 * np.round(v / 5.0), 0.0, 100.0) + 0.0  # + 0.0: no −0


def next_session(p: Params, s: State, session: int) -> tuple[State, np.ndarray]:
    """Between sessions: part of the safety memory is lost, habituation resets, sensitisation
    halves; some patients do not come back (overwhelm and disengagement routes). Returns the
    new state and who dropped out now. ``session`` is the index of the session just ended."""
    vr = np.maximum(s.sess_vr_s, 1.0)
    mean_fear = s.sess_fear_sum / vr
    over_share = np.minimum(s.sess_over_s / 300.0, 1.0)
    # overwhelm route: seconds of overwhelm, an escape, cybersickness;
    # disengagement route: little fear (nothing happens) and little presence, early in the course
    # (Krijn 2004: it is the *early* dropouts who had less fear and presence; later, little fear is
    # what a successful course looks like)
    haz = (0.012 + 0.10 * over_share + 0.12 * s.escaped + 0.08 * np.maximum(s.cs - 0.3, 0.0)
           + 0.20 * np.clip((15.0 - mean_fear) / 15.0, 0.0, 1.0) * (1.0 - p.presence) * (session < EARLY_SESSIONS))
    haz = np.minimum(0.9, haz * p.dropout_propensity)
    drop_now = ~s.dropped & (_draw(p, noise.uniform, session, 0, CH_DROP) < haz)
    z = np.zeros(p.n)
    ns = replace(s, A=z.copy(), H=np.zeros_like(s.H), S=0.5 * s.S,
                 safety=s.safety * (1.0 - p.session_loss)[:, None],
                 cs=0.3 * s.cs, hr=p.rest_hr.copy(), hr_opt=p.rest_hr.copy(), look=z.copy(), dip=z.copy(),
                 u_slow=z.copy(), escaped=np.zeros(p.n, bool), drop_until=z.copy(), sess_over_s=z.copy(),
                 sess_fear_sum=z.copy(), sess_vr_s=z.copy(), dropped=s.dropped | drop_now)
    return ns, drop_now


def approach_fears(p: Params, s: State, level_u: np.ndarray, post: bool = True, delays: int = 1) -> np.ndarray:
    """(L, levels): fear at each hierarchy step in an approach test after a delay and a change of
    context. ``delays``: how many between-session losses of safety memory the delay costs (1: the
    post-course test; 2: a later follow-up). Before treatment (``post=False``) the safety memory is empty."""
    if post:
        safety = s.safety * ((1.0 - p.session_loss) ** delays * p.context_transfer)[:, None]
        S, avoid = 0.5 ** delays * s.S, s.avoid
    else:
        safety, S, avoid = np.zeros_like(s.safety), np.zeros(p.n), np.zeros(p.n)
    safety = acting_safety(p, safety)
    fear = np.empty_like(level_u)
    for j in range(level_u.shape[1]):
        u = level_u[:, j]
        fear[:, j] = np.minimum(100.0, association(p, u, avoid) * (1.0 - _interp_bins(safety, u)) + S)
    return fear


def approach_test(p: Params, s: State, level_u: np.ndarray, post: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A behavioural approach test after a delay and a change of context.

    ``level_u``: (L, levels) effective intensity of each hierarchy level for each patient.
    Returns (steps passed below a fear of 60 in hierarchy order, fear at the top step).
    Before treatment (``post=False``) the safety memory is empty."""
    fear = approach_fears(p, s, level_u, post)
    ok = fear < 60.0
    steps = np.argmin(np.concatenate([ok, np.zeros((p.n, 1), bool)], axis=1), axis=1)
    return np.maximum(steps - 1, 0).astype(float), fear[:, -1]


def replace_lanes(p: Params, s: State, lanes: np.ndarray, keys: np.ndarray, pop: Population) -> tuple[Params, State]:
    """New patients (``keys``) in ``lanes`` of a rep = 1 batch: fresh parameters and state there."""
    if p.rep != 1:
        raise ModelError("replace_lanes needs a batch with rep = 1")
    lanes = np.asarray(lanes)
    q = make_params(pop, keys, p.scene, structure=p.structure, sensor=p.sensor, dropout_per_s=p.dropout_per_s)
    fresh = initial_state(q)
    nk = p.keys.copy()
    nk[lanes] = q.keys
    pp = {}
    for k, v in p.p.items():
        v = v.copy()
        v[lanes] = q.p[k]
        pp[k] = v
    w = p.weights.copy()
    w[lanes] = q.weights
    mh = p.max_hr.copy()
    mh[lanes] = q.max_hr
    np_ = replace(p, keys=nk, p=pp, weights=w, max_hr=mh)
    st = {}
    for f in state_fields():
        v = getattr(s, f).copy()
        v[lanes] = getattr(fresh, f)
        st[f] = v
    return np_, State(**st)


def level_fears(p: Params, s: State, level_u: np.ndarray) -> np.ndarray:
    """(L, levels): fear each level would raise now, outside a session (no habituation)."""
    safety = acting_safety(p, s.safety)
    fear = np.empty_like(level_u)
    for j in range(level_u.shape[1]):
        u = level_u[:, j]
        fear[:, j] = np.minimum(100.0, association(p, u, s.avoid) * (1.0 - _interp_bins(safety, u)) + s.S)
    return fear


def level_intensities(p: Params, table) -> np.ndarray:
    """(L, levels): each patient's effective intensity at each level of a SceneTable."""
    cols = []
    for x in table.intensities:
        prm = table.params_at(np.full(p.n, x))
        cols.append(felt(p.scene, prm, p.weights))
    return np.stack(cols, axis=1)


def state_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(State))
