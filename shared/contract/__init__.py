"""The wire contract (docs/contract.md): the message, its validation, the outcome and the error codes.

Producers import this package too (`producer/`), so it depends on nothing but pydantic.
"""
