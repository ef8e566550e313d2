"""What the CLI tests drive: one in-process `certstate` run, and a pair of Azurite queues with its options."""

from __future__ import annotations

from dataclasses import dataclass

from azure.storage.queue import QueueClient


@dataclass
class Run:
    """What one in-process `certstate` call did."""

    code: int
    out: str
    err: str


@dataclass
class Queues:
    """A fresh input/result queue pair on the session's Azurite, and the options that target them."""

    connection_string: str
    input: QueueClient
    result: QueueClient

    @property
    def args(self) -> list[str]:
        return [
            "--connection-string",
            self.connection_string,
            "--input-queue",
            self.input.queue_name,
            "--result-queue",
            self.result.queue_name,
        ]

    @property
    def input_args(self) -> list[str]:
        return ["--connection-string", self.connection_string, "--input-queue", self.input.queue_name]

    @property
    def result_args(self) -> list[str]:
        return ["--connection-string", self.connection_string, "--result-queue", self.result.queue_name]

    def contents(self, queue: QueueClient) -> list[str]:
        """Every visible message's text, however many: received page by page, then made visible again."""
        held = []
        while page := list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=20)):
            held.extend(page)
        for message in held:
            queue.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)
        return [str(m.content) for m in held]

    def put_outcomes(self, *texts: str) -> None:
        for text in texts:
            self.result.send_message(text)
