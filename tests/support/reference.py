"""Reference material the tests check the code against, vendored in tests/data.

Only the vendored copies are read, so a result never depends on what lies beside the checkout;
tests/layout/test_reference_copies.py checks the copies against the team's kit when it is there.
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
    "seed-update-managedDeviceCertificateState.md": "seed/000_21726a04635030ac.txt",
}


def graph_schema() -> dict[str, Any]:
    """The current Graph beta schema of managedDeviceCertificateState."""
    return json.loads((DATA / "graph-schema.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def seed_page() -> str:
    """The Graph API page the project started from."""
    return (DATA / "seed-update-managedDeviceCertificateState.md").read_text(encoding="utf-8")


def seed_patch_paths() -> list[str]:
    """The seven PATCH paths of the seed page, in order."""
    return re.findall(r"^PATCH (/deviceManagement/\S+)$", seed_page(), flags=re.MULTILINE)


def seed_example_body() -> dict[str, Any]:
    """The seed's example request body."""
    page = seed_page()
    header = page.index("Content-length", page.index("### Request"))
    block = page[page.index("{", header) : page.index("```", header)]
    return json.loads(block)  # type: ignore[no-any-return]
