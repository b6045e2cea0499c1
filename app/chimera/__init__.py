"""chimera: a download-and-run local AI server."""

__version__ = "0.1.0"
