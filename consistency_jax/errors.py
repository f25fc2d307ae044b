"""Errors that are the user's to fix, shared by every module (launch.py prints them alone)."""


class ConfigError(ValueError):
    """A config value that cannot work, named with its key."""
