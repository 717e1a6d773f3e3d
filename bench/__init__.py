"""Benchmark suite: dicomvault side by side with Orthanc (issue #5).

Scripts, not timed tests: ``python -m bench.run --quick`` or ``--full``.
"""
