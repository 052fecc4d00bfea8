"""The scenes there are, by name (light: the command line lists them without loading numpy)."""

SCENES = ("heights", "crowds")

#: the scene events a therapist may inject (a gust of wind, a surge of people, a noise)
EVENTS = ("gust", "surge", "noise")
