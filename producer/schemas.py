"""JSON Schemas of the wire contract, generated from the models the function validates with.

Committed under schemas/ for producers, Logic Apps' request trigger and consumers; a test
fails when the committed files drift from the models. Regenerate with
`python -m producer.schemas`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.contract.messages import ConsentCheck, UpdateMessage
from shared.contract.outcomes import Outcome

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def message_schema() -> dict[str, Any]:
    """The input message (docs/contract.md sections 1 and 3)."""
    return _document(UpdateMessage.model_json_schema(by_alias=True), "certstate update message (v1)")


def outcome_schema() -> dict[str, Any]:
    """The outcome on the result queue (docs/contract.md section 4)."""
    return _document(Outcome.model_json_schema(by_alias=True, mode="serialization"), "certstate outcome (v1)")


def consent_check_schema() -> dict[str, Any]:
    """A consent check on the input queue (docs/contract.md section 7)."""
    return _document(ConsentCheck.model_json_schema(by_alias=True), "certstate consent check (v1.2)")


SCHEMAS = {"message": message_schema, "outcome": outcome_schema, "consent-check": consent_check_schema}


def render(name: str) -> str:
    """The committed text of schemas/<name>.schema.json."""
    return json.dumps(SCHEMAS[name](), indent=2, ensure_ascii=False) + "\n"


def _document(schema: dict[str, Any], title: str) -> dict[str, Any]:
    """Self-contained (no `$ref`), since Logic Apps' trigger schema does not follow references."""
    definitions = schema.pop("$defs", {})
    return {"$schema": _DIALECT, **_inline(schema, definitions), "title": title}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:  # noqa: ANN401 - any JSON value
    if isinstance(node, dict):
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            return _inline({**target, **{k: v for k, v in node.items() if k != "$ref"}}, definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node


def main() -> None:
    """Write every schema file."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name in SCHEMAS:
        path = SCHEMA_DIR / f"{name}.schema.json"
        path.write_text(render(name), encoding="utf-8")
        sys.stdout.write(f"wrote {path.relative_to(SCHEMA_DIR.parent)}\n")


if __name__ == "__main__":
    main()
