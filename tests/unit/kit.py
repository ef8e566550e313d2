"""Reference material the tests check the code against: the kit beside the repo, or its vendored copy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
KIT = REPO.parent / "shared"


def _kit_or_copy(kit_path: str, copy_name: str) -> Path:
    kit = KIT / kit_path
    return kit if kit.is_file() else DATA / copy_name


def graph_schema() -> dict[str, Any]:
    """The current Graph beta schema of managedDeviceCertificateState."""
    path = _kit_or_copy("reference/graph-schema.json", "graph-schema.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def seed_page() -> str:
    """The Graph API page the project started from."""
    return _kit_or_copy("seed/000_21726a04635030ac.txt", "seed-update-managedDeviceCertificateState.md").read_text(
        encoding="utf-8"
    )


def seed_patch_paths() -> list[str]:
    """The seven PATCH paths of the seed page, in order."""
    return re.findall(r"^PATCH (/deviceManagement/\S+)$", seed_page(), flags=re.MULTILINE)


def seed_example_body() -> dict[str, Any]:
    """The seed's example request body."""
    page = seed_page()
    header = page.index("Content-length", page.index("### Request"))
    block = page[page.index("{", header) : page.index("```", header)]
    return json.loads(block)  # type: ignore[no-any-return]
