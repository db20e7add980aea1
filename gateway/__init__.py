"""Email-first async approval gateway for AI agents."""

__version__ = "0.1.0"
