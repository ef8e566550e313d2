"""The same job on msgraph-beta-sdk: certstate's pipeline with the SDK doing the Graph call.

What a user reaching for the SDK would write: one `GraphServiceClient` per process on the managed
identity's async credential (azure-identity, the same emulator as certstate), the update as the
SDK's typed `ManagedDeviceCertificateState` model, and a PATCH through `with_url`, because the SDK
has no request builder for the type-cast routes
(`.../microsoft.graph.{profileType}/managedDeviceCertificateStates/{id}`). Decoding, validation,
routing and the outcome are certstate's, so the comparison isolates the Graph client.

Where the typed model cannot say what the message says, the value goes in `additional_data` (sent
as given): a flags enum with several members (kiota's JSON writer writes a single enum member
only) and the seed-era properties. DateTimeOffset values become `datetime`, so the SDK sends six
fractional digits where the message had seven; certstate sends them as written.

The SDK is async; a sync function keeps one event loop for the process and runs each PATCH on it
(the httpx client stays bound to that loop). Runs only in bench/.venv-sdk (bench/README in
docs/benchmarks.md): msgraph-beta-sdk is not a dependency of certstate.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from azure.identity.aio import ManagedIdentityCredential
from kiota_abstractions.api_error import APIError  # type: ignore[import-not-found,unused-ignore]
from kiota_abstractions.base_request_configuration import (  # type: ignore[import-not-found,unused-ignore]
    RequestConfiguration,
)
from kiota_authentication_azure.azure_identity_authentication_provider import (  # type: ignore[import-not-found,unused-ignore]
    AzureIdentityAuthenticationProvider,
)
from msgraph_beta import GraphRequestAdapter, GraphServiceClient  # type: ignore[import-not-found,unused-ignore]
from msgraph_beta.generated.models import (  # type: ignore[import-not-found,unused-ignore]
    certificate_issuance_states,
    certificate_revocation_status,
    certificate_validity_period_scale,
    device_platform_type,
    key_storage_provider_option,
    key_usages,
    managed_device_certificate_state,
    subject_alternative_name_type,
    subject_name_format,
)

from shared.contract.errors import ErrorCode, GraphRefused, GraphTrace, TransientError
from shared.graph.client import GraphResult
from shared.graph.routes import GraphRequest
from shared.graph.tenancy import Tenant
from shared.host_config import QueueOptions
from shared.pipeline import CertStatePipeline
from shared.settings import Settings
from shared.wiring import build_credential, build_tenants

ManagedDeviceCertificateState: Any = managed_device_certificate_state.ManagedDeviceCertificateState
_ENUMS: dict[str, Any] = {
    "certificateIssuanceState": certificate_issuance_states.CertificateIssuanceStates,
    "certificateKeyStorageProvider": key_storage_provider_option.KeyStorageProviderOption,
    "certificateKeyUsage": key_usages.KeyUsages,
    "certificateRevokeStatus": certificate_revocation_status.CertificateRevocationStatus,
    "certificateSubjectAlternativeNameFormat": subject_alternative_name_type.SubjectAlternativeNameType,
    "certificateSubjectNameFormat": subject_name_format.SubjectNameFormat,
    "certificateValidityPeriodUnits": certificate_validity_period_scale.CertificateValidityPeriodScale,
    "devicePlatform": device_platform_type.DevicePlatformType,
}
_DATETIMES = frozenset(
    {
        "certificateExpirationDateTime",
        "certificateIssuanceDateTime",
        "certificateLastIssuanceStateChangedDateTime",
        "lastCertificateStateChangeDateTime",
    }
)
_LEGACY = frozenset({"serverUrl", "enhancedKeyUsage"})
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def to_model(body: dict[str, Any]) -> Any:  # noqa: ANN401 - an SDK model
    """The update as the SDK's typed model; what it cannot type goes in additional_data."""
    typed: dict[str, Any] = {}
    extra: dict[str, Any] = {}  # sent as given
    for name, value in body.items():
        if value is None or name in _LEGACY or (name in _ENUMS and "," in value):
            extra[name] = value  # a typed None is "not set"; a flags list is not written by kiota
        elif name in _DATETIMES:
            typed[_snake(name)] = datetime.fromisoformat(value)
        elif name in _ENUMS:
            typed[_snake(name)] = _ENUMS[name](value)
        else:
            typed[_snake(name)] = value
    return ManagedDeviceCertificateState(**typed, additional_data=extra)


class SdkPatcher:
    """`GraphPatcher` on msgraph-beta-sdk (kiota's default middleware: retry, redirect, telemetry)."""

    def __init__(self, settings: Settings) -> None:
        self._loop = asyncio.new_event_loop()
        self._credential = ManagedIdentityCredential(client_id=settings.MANAGED_IDENTITY_CLIENT_ID)
        host = urlsplit(settings.GRAPH_BASE_URL).hostname or ""
        auth = AzureIdentityAuthenticationProvider(
            self._credential, scopes=[settings.graph_scope], allowed_hosts=[host]
        )
        adapter = GraphRequestAdapter(auth)
        adapter.base_url = settings.GRAPH_BASE_URL
        self._client = GraphServiceClient(request_adapter=adapter)
        # Any item builder will do: with_url replaces its URL template with the type-cast route.
        self._builder = self._client.device_management.device_configurations.by_device_configuration_id("-")

    def patch(
        self, request: GraphRequest, tenant: Tenant, booked: float | None = None
    ) -> GraphResult:  # the home tenant only
        """PATCH one state; the SDK's RetryHandler retries 429/503/504 itself."""
        body = to_model(request.body)
        config: Any = RequestConfiguration()
        for name, value in request.headers.items():
            config.headers.add(name, value)
        try:
            self._loop.run_until_complete(self._builder.with_url(request.url).patch(body, config))
        except APIError as err:
            status = err.response_status_code
            headers = err.response_headers or {}
            trace = GraphTrace(request_id=headers.get("request-id"), client_request_id=headers.get("client-request-id"))
            if status in (429, 500, 502, 503, 504):
                raise TransientError(
                    code=ErrorCode.GRAPH_UNAVAILABLE, message=str(err), http_status=status, trace=trace
                ) from None
            raise GraphRefused(
                code=ErrorCode.GRAPH_REQUEST_FAILED, message=str(err), http_status=status, trace=trace
            ) from None
        return GraphResult(status=200, trace=GraphTrace(), attempts=1)

    def close(self) -> None:
        """Close the credential and the HTTP client on their loop."""
        self._loop.run_until_complete(self._credential.close())
        self._loop.close()


def build_sdk_pipeline(
    settings: Settings, options: QueueOptions, patcher: SdkPatcher | None = None
) -> CertStatePipeline:
    """certstate's pipeline with the SDK as its Graph client."""
    return CertStatePipeline(
        graph=patcher or SdkPatcher(settings),
        tenants=build_tenants(settings, build_credential(settings)),  # the SDK brings its own token; never used
        graph_base_url=settings.GRAPH_BASE_URL,
        max_dequeue_count=options.max_dequeue_count,
    )
