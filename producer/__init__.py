"""The producer side: the Python library, the `certstate` CLI and the JSON Schemas. Never deployed.

It depends on `shared.contract` (the same models the function validates with); `shared` never
imports it back (tests/layout/test_layout.py).
"""
