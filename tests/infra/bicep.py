"""Read the Bicep templates under infra/ with pycep-parser, for the infra tests.

pycep turns a template into nested dicts. Two quirks matter here:
- a string literal and a symbol reference both come back as a plain `str` (`'x'` and `x` look alike),
  so tests that care about quoting also look at the template text;
- operators of equal precedence nest to the right (`a * b / c` becomes `a * (b / c)`), which is why
  the templates parenthesise arithmetic and `evaluate` trusts only explicit grouping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, cast

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

Template = dict[str, Any]


@cache
def _parser() -> BicepParser:
    return BicepParser()


def bicep_files() -> list[Path]:
    """Every .bicep file under infra/, sorted."""
    return sorted(INFRA.rglob("*.bicep"))


@cache
def parse(relative: str) -> Template:
    """Parse infra/<relative> once per test session."""
    return cast(Template, _parser().parse(file_path=INFRA / relative))


def resource(relative: str, symbol: str) -> dict[str, Any]:
    """The resource `symbol` of infra/<relative>."""
    found: dict[str, Any] = parse(relative)["resources"][symbol]
    return found


def module(symbol: str) -> dict[str, Any]:
    """The module `symbol` of infra/main.bicep."""
    found: dict[str, Any] = parse("main.bicep")["modules"][symbol]
    return found


def param_default(relative: str, name: str) -> Any:
    """The default of parameter `name` of infra/<relative>, or None."""
    return parse(relative)["parameters"][name].get("default")


def text(relative: str) -> str:
    """The raw text of infra/<relative>."""
    return (INFRA / relative).read_text(encoding="utf-8")


def body(resource_or_module: Mapping[str, Any]) -> dict[str, Any]:
    """The object of a resource or module, with an `if (...)` condition unwrapped."""
    config = cast(dict[str, Any], resource_or_module["config"])
    if "condition" in config and isinstance(config.get("config"), dict):
        return cast(dict[str, Any], config["config"])
    return config


def condition(resource_or_module: Mapping[str, Any]) -> Any:
    """The deploy condition of a resource or module, or None."""
    return resource_or_module["config"].get("condition")


def resources_of_type(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    """Symbol name -> resource, for every resource of the given type."""
    return {name: res for name, res in template.get("resources", {}).items() if res["type"] == resource_type}


def decorator(declaration: Mapping[str, Any], kind: str) -> Any:
    """The argument of a decorator (`min_value`, `max_value`, `allowed`, ...), or None."""
    for item in declaration.get("decorators", []):
        if item["type"] == kind:
            return item["argument"]
    return None


def unquote(key: str) -> str:
    """Object keys that needed quotes keep them in pycep's output."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def render(expr: Any) -> str:
    """A compact, Bicep-like rendering of a (simple) expression, for comparisons."""
    if isinstance(expr, bool | int | str) or expr is None:
        return json.dumps(expr) if isinstance(expr, bool) or expr is None else str(expr)
    rendered = json.dumps(expr, sort_keys=True)
    if isinstance(expr, dict) and "operator" in expr:
        op = expr["operator"]
        left, right = (render(op["operands"].get(key)) for key in ("operand_1", "operand_2"))
        templates = {"property_accessor": "{}.{}", "index_accessor": "{}[{}]"}
        rendered = templates[op["type"]].format(left, right) if op["type"] in templates else rendered
    elif isinstance(expr, dict) and "function" in expr:
        fn = expr["function"]
        args = [render(value) for value in fn.get("parameters", {}).values() if value is not None]
        rendered = f"{fn['type']}({', '.join(args)})"
    return rendered


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a nested structure, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


_OPERATORS: dict[str, Callable[[int, int], int]] = {
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a // b,  # Bicep integer division; operands are positive here (checked)
    "add": lambda a, b: a + b,
    "substract": lambda a, b: a - b,  # pycep's spelling
}
_FUNCTIONS: dict[str, Callable[[list[int]], int]] = {"min": min, "max": max}


def evaluate(expr: Any, lookup: Callable[[str], int]) -> int:
    """Evaluate integer arithmetic (literals, symbols, + - * /, min, max) as Bicep does."""
    if isinstance(expr, int) and not isinstance(expr, bool):
        return expr
    if isinstance(expr, str):
        return lookup(expr)
    if isinstance(expr, dict) and expr.get("operator", {}).get("type") in _OPERATORS:
        op = expr["operator"]
        left = evaluate(op["operands"]["operand_1"], lookup)
        right = evaluate(op["operands"]["operand_2"], lookup)
        assert left >= 0, "negative operand"
        assert right > 0 or op["type"] != "divide", "division by zero or by a negative number"
        return _OPERATORS[op["type"]](left, right)
    if isinstance(expr, dict) and expr.get("function", {}).get("type") in _FUNCTIONS:
        fn = expr["function"]
        return _FUNCTIONS[fn["type"]]([evaluate(value, lookup) for value in fn["parameters"].values()])
    raise AssertionError(f"unsupported expression: {json.dumps(expr)[:200]}")


def evaluator(template: Template, overrides: Mapping[str, int]) -> Callable[[str], int]:
    """A symbol lookup for `evaluate`: overrides, then parameter defaults, then variables."""

    def lookup(name: str) -> int:
        if name in overrides:
            return overrides[name]
        if name in template.get("parameters", {}):
            default = template["parameters"][name]["default"]
            assert isinstance(default, int), f"{name} has no integer default"
            return default
        if name in template.get("variables", {}):
            return evaluate(template["variables"][name]["value"], lookup)
        raise AssertionError(f"unknown symbol {name}")

    return lookup


def words(source: str, name: str) -> int:
    """How often `name` occurs as a whole word in `source`."""
    return len(re.findall(rf"(?<![\w$]){re.escape(name)}(?!\w)", source))
