"""Benchmarks of certstate: goodput under Intune's write limit, cost per message, cold start.

`python -m bench` runs them all and writes docs/benchmarks.md; see that file for what is measured
and how. Nothing here is deployed (.funcignore drops bench/).
"""
