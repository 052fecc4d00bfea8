"""The one error root. Every error a user can fix derives from :class:`ExposureError` or from
one of the leaf rooms' roots (``sensors`` and ``scenes`` import nothing of ours, so they keep
their own); ``engine.cli.USER_ERRORS`` maps them all to one line on stderr and exit status 2."""


class ExposureError(Exception):
    """A problem the user can fix; its message is one line that says what to do."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, ``kill``): ends a session as Ctrl-C does, recorded as such."""
