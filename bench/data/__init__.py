"""Data for the benchmarks: the embedded synthetic face set and the loader for LFW-layout dirs.

Both go through the same loader (`bench.data.lfw`), so the code path measured on synthetic data is
the one a user's real LFW directory takes.
"""
