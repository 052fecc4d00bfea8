"""The scenes there are, by name (light: the command line lists them without loading numpy)."""

SCENES = ("heights", "crowds")
