"""What the Python worker refuses when it indexes a v2 app, refused here too, in the worker's words.

When the host loads an app, the Python worker (azure-functions-python-worker, ``functions.Registry``)
compares each parameter of a function with its binding: the parameter names against the binding names,
``func.Out[...]`` against the binding's direction, and the annotated type against what the binding's
converter in azure-functions accepts (``check_input_type_annotation`` / ``check_output_type_annotation``).
A mismatch stops the function from loading at all, so an app the local runner would happily serve, say a
queue output annotated ``func.Out[dict]``, fails on the first deployment. The runner applies the same
rules, through the same converters, and raises with the worker's message text, so a search for what the
runner said finds what Azure would say. The rules reproduced are the worker's for the bindings the runner
serves (queue trigger, queue outputs); deferred bindings (SDK types) are not.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any

from azure.functions import meta
from azure.functions.decorators.core import Binding, BindingDirection

__all__ = ["FunctionLoadError", "check_function"]

_GENERIC_IN = (str, bytes)
_GENERIC_OUT = (str, bytes, bytearray)
"""What the worker's own 'generic' binding accepts, for plain text and for binding types no converter handles."""


class FunctionLoadError(RuntimeError):
    """The worker would not load this function (its exception and message format)."""

    def __init__(self, function_name: str, message: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {message}")


def _converter(binding_type: str) -> Any:  # noqa: ANN401 - azure-functions' converter classes are untyped
    return meta.get_binding_registry().get(binding_type)  # type: ignore[no-untyped-call]


def _accepts(binding_type: str, py_type: Any, *, output: bool) -> bool:  # noqa: ANN401 - any annotation
    converter = _converter(binding_type)
    if converter is None:
        return isinstance(py_type, type) and issubclass(py_type, _GENERIC_OUT if output else _GENERIC_IN)
    check = converter.check_output_type_annotation if output else converter.check_input_type_annotation
    return bool(check(py_type))


def _has_implicit_output(binding_type: str) -> bool:
    converter = _converter(binding_type)
    return bool(converter is not None and getattr(converter, "has_implicit_output", lambda: False)())


def _is_out(annotation: Any) -> bool:  # noqa: ANN401 - any annotation
    """`func.Out[...]` (or a bare `Out`), recognised by name as the worker does."""
    origin = typing.get_origin(annotation)
    candidate = origin if origin is not None else annotation
    return isinstance(candidate, type) and candidate.__name__ == "Out"


def check_function(name: str, user_function: Callable[..., Any], bindings: Iterable[Binding]) -> None:
    """Raise `FunctionLoadError` where the worker would refuse to index this function."""
    params = dict(inspect.signature(user_function).parameters)
    hints = typing.get_type_hints(user_function)
    bound: dict[str, Binding] = {}
    for binding in bindings:
        if BindingDirection(binding.direction) is BindingDirection.INOUT:
            raise FunctionLoadError(name, '"inout" bindings are not supported')
        bound[binding.name] = binding
    if "context" in params and "context" not in bound:
        params.pop("context")  # the worker passes its invocation context here
        annotation = hints.get("context")
        if annotation is not None and not (isinstance(annotation, type) and annotation.__name__ == "Context"):
            raise FunctionLoadError(
                name, f'the "context" parameter is expected to be of type azure.functions.Context, got {annotation!r}'
            )
    if unbound := set(params) - set(bound):
        raise FunctionLoadError(
            name, f"the following parameters are declared in Python but not in function.json: {unbound!r}"
        )
    if unused := set(bound) - set(params):
        raise FunctionLoadError(
            name, f"the following parameters are declared in function.json but not in Python: {unused!r}"
        )
    for param in params:
        _check_parameter(name, param, hints, bound[param])


def _check_parameter(name: str, param: str, hints: dict[str, Any], binding: Binding) -> None:
    annotated = param in hints
    annotation = hints.get(param)
    out_annotation = annotated and _is_out(annotation)
    out_binding = BindingDirection(binding.direction) is BindingDirection.OUT
    py_type = annotation
    if out_annotation:
        arguments = typing.get_args(annotation)
        if len(arguments) != 1:
            raise FunctionLoadError(name, f"binding {param} has invalid Out annotation {annotation!r}")
        py_type = arguments[0]
    if annotated and not isinstance(py_type, type) and typing.get_origin(py_type) is None:
        raise FunctionLoadError(name, f"binding {param} has invalid non-type annotation {annotation!r}")
    if out_binding and annotated and not out_annotation:
        raise FunctionLoadError(
            name,
            f'binding {param} is declared to have the "out" direction, but its annotation in Python is not '
            "a subclass of azure.functions.Out",
        )
    if not out_binding and out_annotation:
        raise FunctionLoadError(
            name,
            f'binding {param} is declared to have the "in" direction in function.json, but its annotation '
            "is azure.functions.Out in Python",
        )
    if not annotated:
        return
    binding_type = str(binding.type)
    plain_text = py_type in (str, bytes) and not _has_implicit_output(binding_type)
    if _accepts("generic" if plain_text else binding_type, py_type, output=out_annotation):
        return
    type_name = getattr(py_type, "__name__", str(py_type))
    # The worker's first wording: a v2 binding's dataType is never the protobuf "undefined" it compares with.
    raise FunctionLoadError(
        name,
        f'{param!r} binding type "{binding.type}" and dataType "{binding.data_type}" in function.json do not '
        f'match the corresponding function parameter\'s Python type annotation "{type_name}"',
    )
