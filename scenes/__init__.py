"""Procedural Panda3D scenes and their exposure hierarchies. A leaf: imports nothing of ours.

Importing this package does not import Panda3D; the scene modules do, when used.
"""

from scenes.hierarchy import SCENES, Hierarchy, HierarchyError, Level, load_hierarchy

__all__ = ["SCENES", "Hierarchy", "HierarchyError", "Level", "load_hierarchy"]
