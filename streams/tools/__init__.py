"""What operators and developers run beside the worker: evaluations, benchmarks, replay,
the demo traffic and `make run`, offline classification of captures, plots.
"""
