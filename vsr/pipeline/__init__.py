"""Threads, bounded channels and the runner that stops, drains, joins and re-raises."""
