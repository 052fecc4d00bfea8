"""The root of every error ``policy/`` raises for a problem a user can fix (a bad population file,
an unknown controller, a policy bundle that does not load). ``policy/`` cannot import the engine's
:class:`engine.errors.ExposureError`; the CLI maps both roots to one line and exit status 2."""


class PolicyError(Exception):
    """A problem with a controller, a population, a policy bundle or an evaluation's settings."""
