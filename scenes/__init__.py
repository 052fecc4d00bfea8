"""Procedural Panda3D scenes and their exposure hierarchies. A leaf: imports nothing of ours.

Importing this package imports nothing heavy (neither Panda3D nor numpy): the hierarchy
(``scenes.hierarchy``) and the scene modules load when used; ``scenes.names`` holds the names.
"""
