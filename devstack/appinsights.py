"""A stand-in for Application Insights' ingestion endpoint on loopback: what the exporters would send.

The Azure Monitor exporters POST batches of telemetry envelopes (JSON, possibly gzip) to
``<IngestionEndpoint>/v2.1/track``; this server keeps them and answers as the service does, so the
real exporters, configured by ``shared.telemetry.configure_azure_monitor_once``, can run end to end
without leaving the machine: the one-copy-of-each-log-line test, the pictures in docs/operations.md
(``python -m bench.charts``) and the telemetry-on benchmark read what arrived here.

``env()`` also switches off what the exporter would send elsewhere (its own usage statistics and
the control plane), since this machine reaches nothing but package registries.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["FakeIngestion"]

INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"


class FakeIngestion:
    """``with FakeIngestion() as ai: ... ai.envelopes("Message")``: every envelope received, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._envelopes: list[dict[str, Any]] = []
        self.bytes_received = 0
        """Uncompressed JSON bytes of every batch: what ingestion would bill."""
        received = self._receive

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                items = json.loads(data or b"[]")
                received(items if isinstance(items, list) else [items], len(data))
                answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the exporter posts every few seconds."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-ingestion", daemon=True)

    def _receive(self, items: list[dict[str, Any]], size: int) -> None:
        with self._lock:
            self._envelopes.extend(items)
            self.bytes_received += size

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def connection_string(self) -> str:
        """An Application Insights connection string whose ingestion endpoint is this server."""
        host, port = self._server.server_address[:2]
        return f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint=http://{host!s}:{port}/"

    def env(self) -> dict[str, str]:
        """App settings that point the exporters here and keep the exporter from phoning anywhere else."""
        return {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": self.connection_string,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        }

    def envelopes(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Envelopes received, e.g. of kind ``Message`` (log lines), ``Request``, ``RemoteDependency``, ``Metric``."""
        with self._lock:
            found = list(self._envelopes)
        return [e for e in found if kind is None or e.get("name") == f"Microsoft.ApplicationInsights.{kind}"]

    def messages(self) -> list[str]:
        """The text of every log line received."""
        return [str(e["data"]["baseData"]["message"]) for e in self.envelopes("Message")]

    def metrics(self) -> list[dict[str, Any]]:
        """Every metric point: ``{"time", "name", "value", "count", "max", "properties"}``."""
        points = []
        for envelope in self.envelopes("Metric"):
            base = envelope["data"]["baseData"]
            for metric in base.get("metrics", []):
                points.append(
                    {
                        "time": envelope["time"],
                        "name": metric["name"],
                        "value": metric["value"],
                        "count": metric.get("count", 1),
                        "max": metric.get("max", metric["value"]),
                        "properties": base.get("properties", {}),
                    }
                )
        return points
