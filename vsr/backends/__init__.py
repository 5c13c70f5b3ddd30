"""Backends run a model on frames: uint8 (or 10-bit) planes in, the same out.

Everything about devices lives here; the pipeline never imports ``torch.cuda``.
"""
