"""Architectures. Each module defines the network and a ``SPEC`` listed in the registry."""
