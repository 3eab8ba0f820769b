"""Errors shared across the project whose message is meant for the user as it is (one line)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration (file, flag or model config) that cannot be used; the message names it and the reason."""
