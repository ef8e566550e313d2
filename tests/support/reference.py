"""Reference material the tests check the code against, vendored in tests/data.

Only the vendored copies are read, so a result never depends on what lies beside the checkout;
tests/layout/test_reference_copies.py checks the copies against the team's kit when it is there.

tests/data/graph-doc-update-managedDeviceCertificateState.md is the current Graph doc page, verbatim (it is
not in the kit): microsoftgraph/microsoft-graph-docs-contrib
`api-reference/beta/api/intune-deviceconfig-manageddevicecertificatestate-update.md`
@ 022b186da1bf6d2f88b9513122ebb32b0b70ef0e (ms.date 08/01/2024), the page graph-facts.md section 3 cites.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
KIT = REPO.parent / "shared"
COPIES = {  # vendored file -> its source in the kit beside the repository
    "graph-schema.json": "reference/graph-schema.json",
    "graph-navigation.json": "reference/graph-navigation.json",
    "seed-update-managedDeviceCertificateState.md": "seed/000_21726a04635030ac.txt",
}


def graph_schema() -> dict[str, Any]:
    """The current Graph beta schema of managedDeviceCertificateState."""
    return json.loads((DATA / "graph-schema.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def graph_navigation() -> dict[str, Any]:
    """The navigation graph of the beta metadata: which owner types reach which profile types."""
    return json.loads((DATA / "graph-navigation.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def seed_page() -> str:
    """The Graph API page the project started from."""
    return (DATA / "seed-update-managedDeviceCertificateState.md").read_text(encoding="utf-8")


def doc_page() -> str:
    """The current Graph doc page of the API (24 routes; its example body carries @odata.type)."""
    return (DATA / "graph-doc-update-managedDeviceCertificateState.md").read_text(encoding="utf-8")


def patch_paths(page: str) -> list[str]:
    """The PATCH paths of a doc page's HTTP request block, in order."""
    return re.findall(r"^PATCH (/deviceManagement/\S+)$", page, flags=re.MULTILINE)


def seed_patch_paths() -> list[str]:
    """The seven PATCH paths of the seed page, in order."""
    return patch_paths(seed_page())


def doc_patch_paths() -> list[str]:
    """The twenty-four PATCH paths of the current doc page, in order."""
    return patch_paths(doc_page())


def example_body(page: str) -> dict[str, Any]:
    """A doc page's example request body, keys in its order."""
    header = page.index("Content-length", page.index("### Request"))
    block = page[page.index("{", header) : page.index("```", header)]
    return json.loads(block)  # type: ignore[no-any-return]


def seed_example_body() -> dict[str, Any]:
    """The seed's example request body."""
    return example_body(seed_page())


def doc_example_body() -> dict[str, Any]:
    """The current doc page's example request body (with its @odata.type)."""
    return example_body(doc_page())
