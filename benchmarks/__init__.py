"""Backend benchmarks: cost models (cost.py), sweeps (cases.py), the timed kernels (backends.py),
timing rules (timing.py), machine metadata (machine.py) and the report (report.py, `python -m
benchmarks.report`). The pytest-benchmark tests that drive them are tests/benchmarks/; README
"Benchmarks" says how to run them."""
