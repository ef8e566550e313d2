"""The messages the benchmarks send: valid updates over the seed page's seven routes.

Imports nothing but the standard library, so both the project's venv and bench/.venv-sdk build
exactly the same bodies.
"""

from __future__ import annotations

import json
from typing import Any

SEED_ROUTES: tuple[tuple[str, str | None, str, str], ...] = (
    ("iosScepCertificateProfile", None, "b2a6c3e0-5d0c-4f5e-9a51-0c6f0d1f2a11", "d99bc884-c884-d99b-84c8-9bd984c89bd9"),
    ("macOSScepCertificateProfile", None, "c0ffee00-0000-4000-8000-000000000019",
     "57a7e000-0019-4000-8000-000000000001"),
    ("androidScepCertificateProfile", None, "c0ffee00-0000-4000-8000-000000000009",
     "57a7e000-0009-4000-8000-000000000001"),
    ("windows81SCEPCertificateProfile", None, "c0ffee00-0000-4000-8000-000000000022",
     "57a7e000-0022-4000-8000-000000000001"),
    ("androidWorkProfileScepCertificateProfile", None, "c0ffee00-0000-4000-8000-000000000011",
     "57a7e000-0011-4000-8000-000000000001"),
    ("androidForWorkScepCertificateProfile", "identityCertificate", "0a0e0000-0000-4000-8000-000000000001",
     "57a7e000-0006-4000-8000-000000000001"),
    ("windowsPhone81SCEPCertificateProfile", "windowsPhone81VpnConfiguration/identityCertificate",
     "0a0e0000-0000-4000-8000-000000000002", "57a7e000-0024-4000-8000-000000000001"),
)  # fmt: skip
"""The seed page's seven routes with the simulator's default ids (devstack/graph_simulator.py)."""


def message(index: int, tenant: str | None = None) -> dict[str, Any]:
    """A valid update, cycling through the seven seed routes and a few property mixes (for `tenant`, if given)."""
    profile_type, via, config, state = SEED_ROUTES[index % len(SEED_ROUTES)]
    update: dict[str, Any] = {
        "certificateExpirationDateTime": "2027-01-01T00:02:14.9489247-08:00",
        "certificateIssuanceState": "issued",
        "certificateKeyUsage": "keyEncipherment,digitalSignature",
        "certificateThumbprint": f"{index:040x}",
    }
    if index % 3 == 0:
        update["certificateKeyLength"] = 2048
        update["certificateSerialNumber"] = f"{index:016X}"
    document: dict[str, Any] = {
        "correlationId": f"bench-{index}",
        "profileType": profile_type,
        "deviceConfigurationId": config,
        "managedDeviceCertificateStateId": state,
        "update": update,
    }
    if via:
        document["via"] = via
    if tenant:
        document["tenantId"] = tenant
    return document


def bodies(count: int, start: int = 0, tenants: tuple[str, ...] = ()) -> list[bytes]:
    """`count` queue bodies as producers store them (raw JSON text, UTF-8), round-robin over `tenants` if any."""
    return [
        json.dumps(message(i, tenants[i % len(tenants)] if tenants else None), separators=(",", ":")).encode()
        for i in range(start, start + count)
    ]
