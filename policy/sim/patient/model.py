"""The virtual patient: pure, vectorised step functions over L patients (1 s per step).

Shared by the ``sim://`` source (L = 1), the gymnasium env and the evaluator (L = thousands;
several controllers side by side see the same patients with the same random numbers). Every
function takes explicit arrays and returns new ones; all randomness comes from
:mod:`.noise`, keyed by (patient, session, second, channel).

Hidden state per patient (docs/patients.md; the evidence and its calibration: docs/calibration.md):
  V(u)  original fear association, logistic in the effective intensity u (severity, midpoint, slope)
  I     safety memory (``State.safety``): inhibition share in [0, 1) over intensity bins; learned at a rate shaped as
        an inverted U around the optimal arousal; partly lost between sessions; what was learned at an
        intensity acts at every lower one too (:func:`generalised`)
  A     current fear (SUDS scale), towards presence·V(u)·(1 − I(u))·(1 − H) + S, faster up than down
  H     within-session habituation to what is shown, over intensity bins: most of the decline within an
        exposure, at the patient's own constant rate (resets between sessions)
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

import math
from dataclasses import dataclass, fields, replace

import numba
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
# within-session habituation (short-term, reset between sessions) carries most of the decline within an
# exposure, at the patient's own constant rate (Portelo 2021); safety learning (long-term) carries the
# change between sessions. H_MAX: the share of fear habituation can remove within a session (assumed);
# H_WIDTH: how far habituation to what is shown generalises over effective intensity (assumed)
H_MAX = 0.95
H_WIDTH = 0.2
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


#: Whether the model's calibration is done: True only once ``exposure calibrate`` passes every
#: anchor for both scenes on 1,000 patients (docs/calibration.md). One anchor is still out
#: (oracle-headroom: the oracle leads the best baseline by 0.02 responders, not 0.05), so policies
#: trained on this model are carded "uncalibrated" and cannot become the default controller
#: (policy.learned.goals_met).
CALIBRATED = False


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
    u = np.ascontiguousarray(np.broadcast_to(np.asarray(u, dtype=float), (p.n,)))
    avoid = np.ascontiguousarray(np.broadcast_to(np.asarray(avoid, dtype=float), (p.n,)))
    out = np.empty(p.n)
    _association_lanes(u, avoid, p.severity, p.slope, p.midpoint, _sig0(p), out)
    return out


@numba.njit(cache=True)
def _association1(u, severity, avoid, slope, midpoint, sig0):
    """V(u) of one patient (``sig0``: the logistic at u = 0, σ(−slope·midpoint), taken by numpy)."""
    v = (_sig1(slope * (u - midpoint)) - sig0) / (1.0 - sig0)
    return min(100.0, 110.0 * (severity + avoid) * v)


@numba.njit(cache=True)
def _association_lanes(u, avoid, severity, slope, midpoint, sig0, out):
    for i in range(len(u)):
        out[i] = _association1(u[i], severity[i], avoid[i], slope[i], midpoint[i], sig0[i])


@numba.njit(cache=True)
def _interp1(row, u):
    """A per-bin quantity of one patient (safety memory, habituation) at effective intensity u."""
    nb = len(row)
    x = min(max(u, 0.0), 1.0) * (nb - 1)
    j = min(int(x), nb - 2)
    w = x - j
    return row[j] * (1.0 - w) + row[j + 1] * w


@numba.njit(cache=True)
def _fears_lanes(level_u, safety, S, avoid, severity, slope, midpoint, sig0, out):
    """Fear outside a session at each column of ``level_u``: V(u)·(1 − I(u)) + S, at most 100."""
    for i in range(level_u.shape[0]):
        for j in range(level_u.shape[1]):
            u = level_u[i, j]
            out[i, j] = min(100.0, _association1(u, severity[i], avoid[i], slope[i], midpoint[i], sig0[i])
                            * (1.0 - _interp1(safety[i], u)) + S[i])


def _fears(p: Params, level_u: np.ndarray, safety: np.ndarray, S: np.ndarray, avoid: np.ndarray) -> np.ndarray:
    level_u = np.ascontiguousarray(level_u, dtype=float)
    out = np.empty(level_u.shape)
    _fears_lanes(level_u, np.ascontiguousarray(safety), np.asarray(S, dtype=float), np.asarray(avoid, dtype=float),
                 p.severity, p.slope, p.midpoint, _sig0(p), out)
    return out


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


def effective_intensity(p: Params, intensity: np.ndarray, params: dict | None, lanes=None) -> np.ndarray:
    """u the patient feels: from the scene parameters when given (and the hierarchy names the
    parameters the model weighs), else the intensity itself. ``lanes`` (index array): ``intensity``
    and ``params`` are those lanes' only."""
    if params is None or any(f[0] not in params for f in FEATURES[p.scene]):
        return np.clip(np.asarray(intensity, dtype=float), 0.0, 1.0)
    return felt(p.scene, params, p.weights if lanes is None else p.weights[lanes])


def step(p: Params, s: State, u: np.ndarray, asked: np.ndarray, session: int, second: int) -> tuple[State, Reading]:
    """Advance one second. ``u``: effective intensity shown during it; ``asked``: a SUDS
    question is pending (immersion cost). ``second`` counts from 1 in each session.

    The equations are :func:`_step_lanes` (compiled, per patient); this gathers their inputs."""
    n = p.n
    P, a_fear = _step_params(p)
    breath = np.array([np.sin(6.283185307179586 * (second + k / 3.0) / 4.5) for k in range(3)])
    ns = State(A=np.empty(n), H=np.empty_like(s.H), S=np.empty(n), safety=np.empty_like(s.safety), cs=np.empty(n),
               hr=np.empty(n), hr_opt=np.empty(n), phase=np.empty(n), look=np.empty(n), dip=np.empty(n),
               u_slow=np.empty(n), escaped=np.empty(n, bool), drop_until=np.empty(n), sess_over_s=np.empty(n),
               sess_fear_sum=np.empty(n), sess_vr_s=np.empty(n), dropped=s.dropped, avoid=np.empty(n))
    r = Reading(bpm=np.empty(n), rr=np.empty((n, 3)), contact=np.empty(n, np.int8), look_away=ns.look, fear=ns.A,
                overwhelm=np.empty(n, bool), in_window=np.empty(n, bool), escaped_now=np.empty(n, bool),
                in_vr=np.empty(n, bool))
    _step_lanes(p.keys, session, second, breath, STRUCTURES.index(p.structure), p.sensor == "chest",
                p.dropout_per_s, np.asarray(u, dtype=float).reshape(n), np.asarray(asked, dtype=bool).reshape(n),
                P, a_fear, s.A, s.H, s.S, s.safety, s.cs, s.hr, s.hr_opt, s.phase, s.look, s.dip, s.u_slow, s.escaped,
                s.drop_until, s.sess_over_s, s.sess_fear_sum, s.sess_vr_s, s.dropped, s.avoid,
                ns.A, ns.H, ns.S, ns.safety, ns.cs, ns.hr, ns.hr_opt, ns.phase, ns.look, ns.dip, ns.u_slow, ns.escaped,
                ns.drop_until, ns.sess_over_s, ns.sess_fear_sum, ns.sess_vr_s, ns.avoid,
                r.bpm, r.rr, r.contact, r.overwhelm, r.in_window, r.escaped_now, r.in_vr)
    return ns, r


#: the parameters :func:`_step_lanes` takes, as the columns of one matrix (patients × parameters): the
#: population's, then those derived from them (``P_MAX_HR`` on). One matrix rather than an array per
#: parameter: a patient's parameters sit together in memory, and the kernel keeps one pointer for all of
#: them rather than two dozen it cannot hold in registers (about 4 % of the kernel's time, measured)
_STEP_PARAMS = ("look_away_max", "look_away_mid", "suds_cost", "presence", "severity", "slope", "midpoint",
                "habituation_half_life_min", "non_habituator", "optimal_arousal", "learning_rate", "overwhelm",
                "escape", "cyber_susceptibility", "rest_hr", "hr_gain", "concordance", "scene_hr", "rmssd_rest",
                "contact_delay_s")
(P_LOOK_AWAY_MAX, P_LOOK_AWAY_MID, P_SUDS_COST, P_PRESENCE, P_SEVERITY, P_SLOPE, P_MIDPOINT, P_HALF_LIFE,
 P_NON_HABITUATOR, P_OPTIMAL_AROUSAL, P_LEARNING_RATE, P_OVERWHELM, P_ESCAPE, P_CYBER, P_REST_HR, P_HR_GAIN,
 P_CONCORDANCE, P_SCENE_HR, P_RMSSD_REST, P_CONTACT_DELAY_S, P_MAX_HR, P_SIG0, P_A_HR_UP, P_A_HR_DOWN) = range(24)


def _step_params(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_step_lanes`'s parameter matrix (the ``P_*`` columns) and the fear's rise and fall per
    second (cached on the Params), with the exponentials of parameters alone taken by numpy once: the
    figures the numpy model had, to the bit (numpy's SIMD exp rounds some arguments differently from the
    C library's, which the kernel uses)."""
    c = p.__dict__.get("_step_cache")
    if c is None:
        sig0 = _sig(-p.slope * p.midpoint)
        a_hr_up = 1.0 - np.exp(-1.0 / p.hr_tau_up)
        a_hr_down = 1.0 - np.exp(-1.0 / p.hr_tau_down)
        cols = [p.p[k] for k in _STEP_PARAMS] + [p.max_hr, sig0, a_hr_up, a_hr_down]
        P = np.ascontiguousarray(np.stack([np.asarray(x, dtype=float).reshape(p.n) for x in cols], axis=1))
        c = (P, 1.0 - np.exp(-1.0 / np.array([8.0, 30.0])))
        object.__setattr__(p, "_step_cache", c)  # Params is frozen; the cache follows from its arrays
    return c


def _sig0(p: Params) -> np.ndarray:
    """σ(−slope·midpoint): the logistic of V(u) at u = 0, per lane."""
    return np.ascontiguousarray(_step_params(p)[0][:, P_SIG0])


@numba.njit(cache=True)
def _sig1(x):
    return 1.0 / (1.0 + math.exp(-x))


@numba.njit(cache=True, inline="always")
def _gauss_bins(seen, width, out):
    """exp(−((bin − seen)/width)²) at each of the model's bins: how far learning or habituation at
    effective intensity ``seen`` reaches each bin.

    The bins are evenly spaced (``BINS``, step h): with d = (BINS[0] − seen)/width and s = h/width, bin
    b's value is exp(−(d + bs)²), and each bin's value is the one before times a factor that itself
    changes by exp(−2s²) from bin to bin. Three exponentials and a few products instead of one
    exponential per bin (the exponentials were a seventh of the kernel's time). The products round
    differently from an exponential each: relative 2·10⁻¹⁴ at most at the widths of habituation and
    safety learning, 2·10⁻¹³ at abrupt-no-transfer's narrow one; the model's tolerance is docs/scale.md's.
    """
    d = (BINS[0] - seen) / width
    s = (BINS[1] - BINS[0]) / width
    e = math.exp(-(d * d))
    r = math.exp(-(2.0 * d * s + s * s))
    q = math.exp(-2.0 * (s * s))
    for b in range(len(out)):
        out[b] = e
        e = e * r
        r = r * q


@numba.njit(cache=True, inline="always")
def _rr_normals(ub, z, nbeats):
    """The normals of the RR intervals of ``nbeats`` (1..3) beats into z[4:7], from the uniforms ``ub``
    (Box–Muller: the fourth pair, then the cosine of the fifth)."""
    rad = math.sqrt(-2.0 * math.log(ub[9]))
    ang = 6.283185307179586 * ub[10]
    z[4] = rad * math.cos(ang)
    if nbeats > 1:
        z[5] = rad * math.sin(ang)
    if nbeats > 2:
        z[6] = math.sqrt(-2.0 * math.log(ub[11])) * math.cos(6.283185307179586 * ub[12])


@numba.njit(cache=True)
def _step_lanes(keys, session, isecond, breath, structure, chest, dropout_per_s, u_in, asked, P, a_fear,
                A0, H0, S0, safety0, cs0, hr0, hr_opt0, phase0, look0, dip0, u_slow0, escaped0, drop_until0,
                over_s0, fear_sum0, vr_s0, dropped, avoid0,
                A1, H1, S1, safety1, cs1, hr1, hr_opt1, phase1, look1, dip1, u_slow1, escaped1, drop_until1,
                over_s1, fear_sum1, vr_s1, avoid1,
                bpm, rr, contact, over, win, esc_now, in_vr):
    """One second of the virtual patient (see the module's doc), per lane; structure: index in STRUCTURES
    (0 full, 1 habituation-only, 2 inhibitory-flat, 3 no-sensitisation, 4 abrupt-no-transfer)."""
    n = len(u_in)
    nk = len(keys)
    nb_ = H0.shape[1]
    second = float(isecond)
    counters = np.empty(N_UNIFORM, np.uint64)
    for j in range(N_UNIFORM):
        counters[j] = noise.counter4(CH_SECOND, session, isecond, j)
    g = np.empty(nb_)
    hk = np.empty(nb_)
    kern = np.empty(nb_)
    z = np.empty(8)
    # noise: each patient's uniforms for this second (noise.uniform_block) and the normals of the first two
    # Box–Muller pairs (fear, look, hr, bpm), once per patient: the rep copies of a patient (one per
    # controller group, lane i is key i % nk) share them. The RR pairs are drawn below, per lane, only for the
    # beats there are (a draw is a pure function of its counter: drawing it or not changes no other draw).
    ub_all = np.empty((nk, N_UNIFORM))
    # with several copies of each patient (n > nk) the RR normals too, all three, once per patient; with one
    # copy, per lane and only for the beats there are
    shared_rr = n > nk
    z_all = np.empty((nk, 7))
    # the two Gaussian kernels over the bins at seen = 0 (out of VR, or nothing shown): the same
    # expressions as below, taken once
    hk0, kern0, kern0_abrupt = np.empty(nb_), np.empty(nb_), np.empty(nb_)
    _gauss_bins(0.0, H_WIDTH, hk0)
    _gauss_bins(0.0, 0.15, kern0)
    _gauss_bins(0.0, 0.06, kern0_abrupt)
    drift_all = np.empty(nk)  # the slow drift of resting HR: a function of the patient and the second
    for kk in range(nk):
        drift_all[kk] = 1.5 * math.sin(6.283185307179586 * (second / 900.0 + P[kk, P_SEVERITY] * 7.0))
        key = keys[kk]
        for j in range(N_UNIFORM):
            ub_all[kk, j] = noise.to_unit(noise.mix(counters[j] ^ key))
        for q in range(2):
            rad = math.sqrt(-2.0 * math.log(ub_all[kk, 5 + 2 * q]))
            ang = 6.283185307179586 * ub_all[kk, 6 + 2 * q]
            z_all[kk, 2 * q] = rad * math.cos(ang)
            z_all[kk, 2 * q + 1] = rad * math.sin(ang)
        if shared_rr:
            _rr_normals(ub_all[kk], z_all[kk], 3)
    for i in range(n):
        ub = ub_all[i % nk]
        zk = z_all[i % nk]
        z_fear, z_look, z_hr, z_bpm = zk[0], zk[1], zk[2], zk[3]
        out_vr = escaped0[i] or dropped[i]
        u = 0.0 if out_vr else u_in[i]
        A = A0[i]
        # behaviour: looking down/away rises with fear and lowers what is seen
        la_t = P[i, P_LOOK_AWAY_MAX] * _sig1((A - P[i, P_LOOK_AWAY_MID]) / 8.0)
        look = min(max(look0[i] + (la_t + 0.05 * z_look - look0[i]) / 20.0, 0.0), 1.0)
        seen = u * (1.0 - 0.2 * look)
        dip = P[i, P_SUDS_COST] if asked[i] else dip0[i] * 0.9355  # recovers with τ ≈ 15 s
        pres = 0.0 if out_vr else (0.7 + 0.3 * P[i, P_PRESENCE]) * (1.0 - 0.4 * cs0[i]) * (1.0 - dip)
        # V(u): the fear association
        V = _association1(seen, P[i, P_SEVERITY], avoid0[i], P[i, P_SLOPE], P[i, P_MIDPOINT], P[i, P_SIG0])
        # the acting safety memory: generalised downward (generalised()) but under abrupt-no-transfer
        m = -np.inf
        for b in range(nb_ - 1, -1, -1):
            m = max(m, safety0[i, b])
            g[b] = safety0[i, b] if structure == 4 else m
        inhib = _interp1(g, seen)
        hab = _interp1(H0[i], seen)
        drive = min(100.0, pres * V * (1.0 - inhib) * (1.0 - hab) + S0[i])
        A = A + (drive - A) * (a_fear[0] if drive > A else a_fear[1]) + 1.0 * z_fear
        A = min(max(A, 0.0), 100.0)
        # within-session habituation to what is shown, at a constant rate while afraid (Portelo 2021),
        # generalising a little to nearby intensities
        k_h = LN2 / (P[i, P_HALF_LIFE] * 60.0) * (0.1 if P[i, P_NON_HABITUATOR] > 0.5 else 1.0)
        u_slow = u_slow0[i] + (seen - u_slow0[i]) / 60.0
        coef = k_h * min(A / 10.0, 1.0) * pres
        if coef == 0.0:  # no fear or no presence: nothing accrues (H0 + 0·finite is H0, to the bit)
            for b in range(nb_):
                H1[i, b] = H0[i, b]
        else:
            if seen == 0.0:
                hk[:] = hk0
            else:
                _gauss_bins(seen, H_WIDTH, hk)
            # normalised so that habituation at the intensity shown accrues at the patient's own rate
            # wherever that intensity falls between the bins
            hnorm = _interp1(hk, seen)
            for b in range(nb_):
                H1[i, b] = H0[i, b] + coef * (hk[b] / hnorm) * (H_MAX - H0[i, b])
        # safety memory
        if structure == 2:  # inhibitory-flat
            rate = 0.7 * (1.0 if A > 10.0 else 0.0)
        elif structure == 1:  # habituation-only
            rate = 2.0 * _interp1(H1[i], seen) * (1.0 if A > 10.0 else 0.0)
        else:
            # inverted U around the optimal arousal: wide below it, narrow above it
            d = A - P[i, P_OPTIMAL_AROUSAL]
            r = d / (U_BELOW if d < 0.0 else U_ABOVE)
            rate = math.exp(-0.5 * (r * r))
        rate = P[i, P_LEARNING_RATE] * rate * pres
        width = 0.15
        if structure == 4:  # abrupt-no-transfer
            rate = rate * (1.0 if (seen - u_slow) < 0.08 else 0.0)
            width = 0.06
        over_f = max(A - P[i, P_OVERWHELM], 0.0)
        # escape: hazard grows steeply near the escape threshold
        # (no hazard, and no exponential, more than 10 below the threshold: min(0.5, ·)·0 is 0)
        haz = min(0.5, 0.02 * math.exp((A - P[i, P_ESCAPE]) / 2.5)) if A > P[i, P_ESCAPE] - 10.0 else 0.0
        esc = not out_vr and ub[U_ESCAPE] < haz
        if seen == 0.0:  # (not a conditional expression: choosing an array costs a reference count)
            if structure == 4:
                kern[:] = kern0_abrupt
            else:
                kern[:] = kern0
        else:
            _gauss_bins(seen, width, kern)
        for b in range(nb_):
            sf = safety0[i, b] + (rate * kern[b]) * (1.0 - safety0[i, b])
            if structure != 3:  # sensitisation above the overwhelm threshold erodes the safety memory
                sf = sf - (0.002 * over_f) * kern[b] * sf
            if esc:
                sf = sf - 0.15 * kern[b] * sf
            safety1[i, b] = min(max(sf, 0.0), 0.999)
        S1[i] = S0[i] if structure == 3 else min(40.0, S0[i] * 0.99834 + 0.02 * over_f)  # τ ≈ 10 min
        avoid1[i] = avoid0[i] + 0.03 * (1.0 if esc else 0.0)
        escaped1[i] = escaped0[i] or esc
        # cybersickness: time × intensity, plus a part driven by anxiety alone
        vr = not out_vr
        cs1[i] = cs0[i] + P[i, P_CYBER] * (0.2 + 0.8 * u + 0.5 * A / 100.0) / 3600.0 * (1.0 - cs0[i]) if vr \
            else cs0[i] * 0.99
        # heart
        drift = drift_all[i % nk]
        hr_t = P[i, P_REST_HR] + P[i, P_HR_GAIN] * P[i, P_CONCORDANCE] * A / 100.0 + P[i, P_SCENE_HR] * u + drift
        hr = hr0[i] + (hr_t - hr0[i]) * (P[i, P_A_HR_UP] if hr_t > hr0[i] else P[i, P_A_HR_DOWN]) + 0.4 * z_hr
        hr = min(max(hr, 35.0), 215.0)
        hr_opt = hr_opt0[i] + (hr - hr_opt0[i]) * 0.1535  # optical lag, τ ≈ 6 s
        # beats and RR intervals in this second
        ph = phase0[i] + hr / 60.0
        nbeats = min(math.floor(ph) - math.floor(phase0[i]), 3.0)
        rmssd = P[i, P_RMSSD_REST] * math.exp(-0.8 * A / 100.0 - 0.01 * max(hr - P[i, P_REST_HR], 0.0))
        jit = 3.0 if chest else 20.0
        base_rr = 60000.0 / hr
        sd = math.sqrt(rmssd * rmssd / 2.0 + jit * jit)
        art = ub[U_ART]
        if shared_rr:
            z[4], z[5], z[6] = zk[4], zk[5], zk[6]
        elif nbeats > 0:
            _rr_normals(ub, z, nbeats)
        for k in range(3):
            if nbeats > k:
                xk = base_rr + (0.03 * base_rr) * breath[k] + sd * z[4 + k]
                if k == 0:
                    xk = 2.0 * xk if art < 0.003 else (0.5 * xk if art > 0.998 else xk)  # missed / extra beat
                rr[i, k] = np.rint(xk * 1.024) / 1.024
            else:
                rr[i, k] = np.nan
        # what the sensor reports
        bt, btlen = ub[U_BT], ub[U_BTLEN]
        silent = second < drop_until0[i]
        start = not silent and bt < dropout_per_s
        du = second + 2.0 + 58.0 * btlen * btlen if start else drop_until0[i]
        if not chest:
            gap = not silent and not start and ub[U_GAP] < 0.004 * (1.0 + 3.0 * look)
            if gap:
                du = second + 2.0 + 13.0 * btlen
            start = start or gap
        drop_until1[i] = du
        sent = not silent and not start
        if chest:
            ok = second >= P[i, P_CONTACT_DELAY_S]
            bpm[i] = np.rint(hr + 0.5 * z_bpm) if ok else np.rint(hr + 12.0 * z_bpm)
            contact[i] = 1 if ok else 0
            if not ok:
                for k in range(3):
                    rr[i, k] = np.nan
        else:
            bpm[i] = np.rint(hr_opt + 2.5 * z_bpm)
            contact[i] = -1
        if not sent:
            bpm[i] = np.nan
            for k in range(3):
                rr[i, k] = np.nan
        ov = vr and (A > P[i, P_OVERWHELM] or hr > 0.85 * P[i, P_MAX_HR])
        hi_w = min(P[i, P_OPTIMAL_AROUSAL] + WINDOW_HALF, P[i, P_OVERWHELM])
        over[i] = ov
        win[i] = vr and A >= P[i, P_OPTIMAL_AROUSAL] - WINDOW_HALF and A <= hi_w
        esc_now[i] = esc
        in_vr[i] = vr
        A1[i], hr1[i], hr_opt1[i], phase1[i], look1[i], dip1[i], u_slow1[i] = A, hr, hr_opt, ph - math.floor(ph), \
            look, dip, u_slow
        over_s0_i = over_s0[i] + (1.0 if ov else 0.0)
        over_s1[i] = over_s0_i
        fear_sum1[i] = fear_sum0[i] + (A if vr else 0.0)
        vr_s1[i] = vr_s0[i] + (1.0 if vr else 0.0)


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
    return _fears(p, level_u, acting_safety(p, safety), S, avoid)


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
    return _fears(p, level_u, acting_safety(p, s.safety), s.S, s.avoid)


def level_intensities(p: Params, table) -> np.ndarray:
    """(L, levels): each patient's effective intensity at each level of a SceneTable."""
    cols = []
    for x in table.intensities:
        prm = table.params_at(np.full(p.n, x))
        cols.append(felt(p.scene, prm, p.weights))
    return np.stack(cols, axis=1)


def state_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(State))
