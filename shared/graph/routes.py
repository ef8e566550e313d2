"""The one Graph URL a message names (docs/contract.md section 2, docs/routes.md), and nothing else.

Ids are validated by the message model and percent-encoded here as well, so no value can
add a path segment, a query or a fragment, whatever the model lets through in the future;
a `via` becomes path segments only through a lookup of the navigation graph's own names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from shared.contract import navigation as nav
from shared.contract.messages import UpdateMessage

PREFER_UNKNOWN_ENUM_MEMBERS = "include-unknown-enum-members"


@dataclass(frozen=True)
class GraphRequest:
    """A resolved PATCH: the URL, the body and the headers the body calls for."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The request as the `validated` outcome shows it."""
        return {"method": "PATCH", "url": self.url, "headers": self.headers, "body": self.body}


def _segment(value: str) -> str:
    return quote(value, safe="")


_HOP_PATHS: Final = {hop.via: f"/microsoft.graph.{hop.owner}/{hop.navigation}" for hop in nav.HOPS} | {
    nav.SEED_HOP: f"/{nav.SEED_HOP}"
}
"""`via` -> its path segments, for exactly the values the message model accepts."""


def route_path(message: UpdateMessage) -> str:
    """The path below `GRAPH_BASE_URL` for this message's `via` form (docs/routes.md)."""
    hop = "" if message.via is None else _HOP_PATHS[message.via]
    return (
        f"/deviceManagement/deviceConfigurations/{_segment(message.device_configuration_id)}{hop}"
        f"/microsoft.graph.{_segment(message.profile_type)}"
        f"/managedDeviceCertificateStates/{_segment(message.managed_device_certificate_state_id)}"
    )


def build_request(base_url: str, message: UpdateMessage) -> GraphRequest:
    """The full PATCH for a validated message."""
    headers = {"Prefer": PREFER_UNKNOWN_ENUM_MEMBERS} if message.update.needs_unknown_enum_members else {}
    return GraphRequest(url=base_url + route_path(message), body=message.update.body(), headers=headers)
