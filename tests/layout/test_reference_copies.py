"""The vendored reference copies in tests/data are the team's kit, byte for byte, when the kit is beside the repo."""

from __future__ import annotations

import pytest

from tests.support.reference import COPIES, DATA, KIT


@pytest.mark.parametrize(("copy", "source"), COPIES.items())
def test_the_vendored_copy_matches_the_kit(copy: str, source: str):
    original = KIT / source
    if not original.is_file():
        pytest.skip(f"the kit is not beside this checkout ({original}); the vendored copy is used as it is")
    assert (DATA / copy).read_bytes() == original.read_bytes(), f"refresh tests/data/{copy} from {original}"
