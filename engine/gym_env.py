"""Registers ``ExposureTherapy-v0`` with gymnasium (call :func:`register_gym_env`; importing
does not register) and builds it with the scene's hierarchy — ``policy/`` cannot load
hierarchies itself (it does not import ``scenes/``). See :mod:`policy.sim.env` for the spec."""

from __future__ import annotations

import gymnasium as gym

from policy.sim.env import ENV_ID, ExposureTherapyEnv, ExposureVecEnv, SafetyShieldWrapper
from policy.step import SceneTable
from scenes.hierarchy import HierarchyError, load_hierarchy


def scene_table(scene: str = "heights", hierarchy: str | None = None) -> SceneTable:
    """A scene's shipped hierarchy, or a therapist's own hierarchy file, as the batch session and
    the patient model take it (the hierarchy itself: it has one ``level_index``/``params_at``)."""
    h = load_hierarchy(hierarchy or scene)
    if h.scene != scene:
        raise HierarchyError(f"hierarchy {h.source} is for scene {h.scene!r}, not {scene!r}")
    return h


def make_env(scene: str = "heights", population: str | None = None, structure: str | None = None,
             hierarchy: str | None = None, shield: bool = True, **kwargs) -> gym.Env:
    env = ExposureTherapyEnv(scene_table(scene, hierarchy), population=population, structure=structure, **kwargs)
    return SafetyShieldWrapper(env) if shield else env


def make_vec_env(n_envs: int = 64, scene: str = "heights", population: str | None = None,
                 structure: str | None = None, hierarchy: str | None = None, **kwargs) -> ExposureVecEnv:
    return ExposureVecEnv(scene_table(scene, hierarchy), n_envs, population=population, structure=structure, **kwargs)


def register_gym_env() -> None:
    """Make ``gym.make("ExposureTherapy-v0", scene=…)`` available. Safe to call twice."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="engine.gym_env:make_env")

