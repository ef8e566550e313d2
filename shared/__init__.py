"""certstate: keep Intune managedDeviceCertificateState in sync from a Storage queue.

The typed core of the function app. `function_app.py` only adapts the Functions
bindings to `shared.pipeline`; everything here runs without the Functions host.
"""
