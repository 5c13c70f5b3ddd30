"""vsr: video super-resolution that keeps the original audio, timing and colours."""

__version__ = "0.1.0"
