"""Rendering of result documents (the figures themselves come from bench.summary)."""
