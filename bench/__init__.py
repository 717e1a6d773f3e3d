"""Benchmark suite: dicomvault side by side with Orthanc, figure by figure.

Scripts, not timed tests: ``python -m bench.run --quick`` or ``--full``.
"""
