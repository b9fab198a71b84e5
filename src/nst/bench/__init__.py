"""Benchmarks: tools that measure the product, kept apart from it. `python -m nst.bench` is the speed bench."""
