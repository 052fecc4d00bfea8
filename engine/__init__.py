"""The session core, clock, arbiter, session store, runners, console, replay, reports, export, CLI."""

__version__ = "0.1.0"
