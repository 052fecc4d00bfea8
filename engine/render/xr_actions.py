"""The patient's hands: OpenXR actions for a SUDS dial and a safety exit.

Five actions in one action set, with suggested bindings for the common controller profiles
(the runtime picks the profile of the controllers the patient holds):

============  ==========================  ============================  =====================  =========================
action        KHR simple controller       Oculus Touch                  Valve Index            HTC Vive
============  ==========================  ============================  =====================  =========================
suds_up       right select                right B, right stick up       right B, stick up      right trackpad up
suds_down     left select                 right A, right stick down     right A, stick down    right trackpad down
suds_submit   right menu                  right trigger                 right trigger          right trigger
safety_exit   left menu (hold)            left X or Y (hold)            left A or B (hold)     left menu (hold)
============  ==========================  ============================  =====================  =========================

The dial (:class:`PatientControls`, pure and tested without a runtime) turns action states into
patient commands for the session core — the same ``push_command`` path the therapist's take:

- When the core asks for a SUDS rating, the dial opens at the last rating (50 the first time);
  up/down move it in steps of 5 within 0–100; submit sends ``{"type": "suds", "value": v}``.
  Submit with no question pending opens the dial to volunteer a rating.
- Holding the safety button for :data:`SAFETY_HOLD_S` sends ``{"type": "pause"}`` once per hold,
  whatever else is going on (dial open, policy, controller profile). A short hold debounces an
  accidental brush; it is far below a frame of session time lost to a real request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SAFETY_HOLD_S = 0.5
SUDS_STEP = 5
AXIS_ON, AXIS_OFF = 0.6, 0.3  # stick/trackpad: a flick past 0.6 steps once; back under 0.3 re-arms

ACTIONS = {  # name → (type, localized name)
    "suds_up": ("boolean", "SUDS rating up"),
    "suds_down": ("boolean", "SUDS rating down"),
    "suds_axis": ("float", "SUDS rating dial (stick or trackpad)"),
    "suds_submit": ("boolean", "Give the SUDS rating"),
    "safety_exit": ("boolean", "Pause to the calm place (hold)"),
}

PROFILES = {
    "/interaction_profiles/khr/simple_controller": {
        "suds_up": ["/user/hand/right/input/select/click"],
        "suds_down": ["/user/hand/left/input/select/click"],
        "suds_submit": ["/user/hand/right/input/menu/click"],
        "safety_exit": ["/user/hand/left/input/menu/click"],
    },
    "/interaction_profiles/oculus/touch_controller": {
        "suds_up": ["/user/hand/right/input/b/click"],
        "suds_down": ["/user/hand/right/input/a/click"],
        "suds_axis": ["/user/hand/right/input/thumbstick/y"],
        "suds_submit": ["/user/hand/right/input/trigger/value"],
        "safety_exit": ["/user/hand/left/input/x/click", "/user/hand/left/input/y/click"],
    },
    "/interaction_profiles/valve/index_controller": {
        "suds_up": ["/user/hand/right/input/b/click"],
        "suds_down": ["/user/hand/right/input/a/click"],
        "suds_axis": ["/user/hand/right/input/thumbstick/y"],
        "suds_submit": ["/user/hand/right/input/trigger/click"],
        "safety_exit": ["/user/hand/left/input/a/click", "/user/hand/left/input/b/click"],
    },
    "/interaction_profiles/htc/vive_controller": {
        "suds_axis": ["/user/hand/right/input/trackpad/y"],
        "suds_submit": ["/user/hand/right/input/trigger/click"],
        "safety_exit": ["/user/hand/left/input/menu/click"],
    },
}


@dataclass(frozen=True)
class ActionFrame:
    """The actions' states at one frame (what xrGetActionState* returned after xrSyncActions)."""

    t: float
    suds_up: bool = False
    suds_down: bool = False
    suds_axis: float = 0.0
    suds_submit: bool = False
    safety_exit: bool = False


class PatientControls:
    """Action states → patient commands (dicts for ``SessionCore.push_command``). Edge-triggered:
    a button held across frames counts once; the safety exit fires once per hold."""

    def __init__(self, hold_s: float = SAFETY_HOLD_S):
        self.hold_s = hold_s
        self.value: int | None = None  # the dial, when open
        self.volunteering = False
        self.last_given: int | None = None
        self._prev = ActionFrame(-math.inf)
        self._axis_armed = True
        self._exit_since: float | None = None
        self._exit_fired = False
        self._answered = False
        self.counts = {"suds": 0, "safety_exit": 0}

    @property
    def dial_open(self) -> bool:
        return self.value is not None

    def update(self, a: ActionFrame, suds_pending: bool) -> list[dict]:
        out: list[dict] = []
        p = self._prev
        # The safety exit first: whatever else happens this frame, it is never held back.
        if a.safety_exit:
            if self._exit_since is None:
                self._exit_since = a.t
            if not self._exit_fired and a.t - self._exit_since >= self.hold_s:
                self._exit_fired = True
                self.counts["safety_exit"] += 1
                out.append({"type": "pause"})
        else:
            self._exit_since, self._exit_fired = None, False
        if not suds_pending:
            self._answered = False
        if suds_pending and self.value is None and not self._answered:
            self.value = 50 if self.last_given is None else self.last_given
        if not suds_pending and self.value is not None and not self.volunteering:
            self.value = None  # answered elsewhere (keyboard, therapist) or withdrawn
        submit = a.suds_submit and not p.suds_submit
        if self.value is None:
            if submit:
                self.volunteering = True
                self.value = 50 if self.last_given is None else self.last_given
        else:
            step = (a.suds_up and not p.suds_up) - (a.suds_down and not p.suds_down)
            if self._axis_armed and abs(a.suds_axis) >= AXIS_ON:
                step += 1 if a.suds_axis > 0 else -1
                self._axis_armed = False
            self.value = max(0, min(100, self.value + SUDS_STEP * step))
            if submit:
                out.append({"type": "suds", "value": float(self.value)})
                self.counts["suds"] += 1
                self.last_given, self.value, self.volunteering = self.value, None, False
                self._answered = True  # until the core has taken it (the question is no longer pending)
        if abs(a.suds_axis) <= AXIS_OFF:
            self._axis_armed = True
        self._prev = a
        return out


class XrActions:
    """The action set on a live OpenXR session (pyopenxr): created on the instance, bindings
    suggested for every profile in :data:`PROFILES`, attached to the session; :meth:`read`
    syncs and returns an :class:`ActionFrame` (all released when the session is not focused)."""

    def __init__(self, xr, instance):
        self.xr, self.instance = xr, instance
        self.set = xr.create_action_set(instance, xr.ActionSetCreateInfo(
            action_set_name="patient", localized_action_set_name="Patient", priority=0))
        self.actions = {}
        for name, (typ, label) in ACTIONS.items():
            at = xr.ActionType.BOOLEAN_INPUT if typ == "boolean" else xr.ActionType.FLOAT_INPUT
            self.actions[name] = xr.create_action(self.set, xr.ActionCreateInfo(
                action_type=at, action_name=name, localized_action_name=label))
        self.profiles_accepted: list[str] = []
        self.profiles_refused: dict[str, str] = {}
        for profile, table in PROFILES.items():
            bindings = [xr.ActionSuggestedBinding(self.actions[a], xr.string_to_path(instance, path))
                        for a, paths in table.items() for path in paths]
            try:
                xr.suggest_interaction_profile_bindings(instance, xr.InteractionProfileSuggestedBinding(
                    interaction_profile=xr.string_to_path(instance, profile),
                    count_suggested_bindings=len(bindings),
                    suggested_bindings=(xr.ActionSuggestedBinding * len(bindings))(*bindings)))
                self.profiles_accepted.append(profile)
            except xr.XrException as e:  # a runtime may not know a profile: the others still work
                self.profiles_refused[profile] = type(e).__name__
        self.session = None

    def attach(self, session) -> None:
        xr = self.xr
        xr.attach_session_action_sets(session, xr.SessionActionSetsAttachInfo(action_sets=[self.set]))
        self.session = session

    def read(self, t: float, focused: bool) -> ActionFrame:
        if self.session is None or not focused:
            return ActionFrame(t)
        import ctypes

        xr = self.xr
        active = xr.ActiveActionSet(self.set, xr.NULL_PATH)
        xr.sync_actions(self.session, xr.ActionsSyncInfo(count_active_action_sets=1,
                                                         active_action_sets=ctypes.pointer(active)))
        vals = {}
        for name, (typ, _) in ACTIONS.items():
            info = xr.ActionStateGetInfo(action=self.actions[name], subaction_path=xr.NULL_PATH)
            if typ == "boolean":
                vals[name] = bool(xr.get_action_state_boolean(self.session, info).current_state)
            else:
                vals[name] = float(xr.get_action_state_float(self.session, info).current_state)
        return ActionFrame(t, **vals)

    def current_profile(self, hand: str = "right") -> str | None:
        """The interaction profile the runtime bound for a hand (for the log), or None."""
        xr = self.xr
        if self.session is None:
            return None
        try:
            hand_path = xr.string_to_path(self.instance, f"/user/hand/{hand}")
            st = xr.get_current_interaction_profile(self.session, hand_path)
            if not st.interaction_profile:
                return None
            return xr.path_to_string(self.instance, st.interaction_profile)
        except xr.XrException:
            return None

    def close(self) -> None:
        if self.set is not None:
            self.xr.destroy_action_set(self.set)
            self.set = None
