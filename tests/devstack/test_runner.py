"""The local queue runner against real Azurite, with a small app whose behaviour each message chooses.

A message body is a command: ``ok``/anything (succeed), ``raise``, ``fail-until:N`` (raise while
dequeue_count < N), ``sleep:S``, ``multi`` (two outputs). The function always sets its output *before*
deciding to fail, so a failed invocation that leaked outputs would show up in the output queue.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from devstack.azurite import ACCOUNT_KEY, REPO_ROOT, Azurite
from devstack.runner import (
    AZURITE_QUEUE_PORT_VARIABLE,
    HostQueueOptions,
    Runner,
    RunnerError,
    development_storage_connection_string,
    poison_queue_name,
    sync_thread_count,
)
from shared.contract.limits import POISON_SUFFIX, TRIGGER_QUEUE_NAME_MAX, queue_name_problem

CONN = "TestQueueConn"


# -- the test app ----------------------------------------------------------------------------------------------


@dataclass
class Call:
    id: str
    body: bytes
    dequeue_count: int
    at: float


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, msg: func.QueueMessage) -> None:
        with self.lock:
            self.calls.append(Call(msg.id or "", msg.get_body(), msg.dequeue_count or 0, time.monotonic()))
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1

    def wait_for_calls(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            assert time.monotonic() < deadline, f"only {len(self.calls)} of {count} calls"
            time.sleep(0.02)


def make_app(recorder: Recorder, trigger_queue: str = "%IN_QUEUE%") -> func.FunctionApp:
    app = func.FunctionApp()

    @app.function_name(name="Echo")
    @app.queue_trigger(arg_name="msg", queue_name=trigger_queue, connection=CONN)
    @app.queue_output(arg_name="out", queue_name="%OUT_QUEUE%", connection=CONN)
    def echo(msg: func.QueueMessage, out: func.Out[str]) -> None:
        recorder.enter(msg)
        try:
            text = msg.get_body().decode("utf-8")
            command, _, arg = text.partition(":")
            out.set(f"out:{text}")
            if command == "raise":
                raise RuntimeError("boom")
            if command == "fail-until" and (msg.dequeue_count or 0) < int(arg):
                raise RuntimeError(f"not yet at dequeue_count {arg}")
            if command == "sleep":
                time.sleep(float(arg))
            if command == "multi":
                out.set(["a", "b"])  # type: ignore[arg-type]
        finally:
            recorder.leave()

    return app


# -- helpers ---------------------------------------------------------------------------------------------------


def host(**queues: object) -> dict[str, object]:
    defaults: dict[str, object] = {
        "batchSize": 8,
        "newBatchThreshold": 4,
        "maxPollingInterval": "00:00:00.2",
        "visibilityTimeout": "00:00:00",
        "maxDequeueCount": 5,
        "messageEncoding": "none",
    }
    return {"version": "2.0", "extensions": {"queues": {**defaults, **queues}}}


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass
class Stack:
    azurite: Azurite
    service: QueueServiceClient
    in_queue: str
    out_queue: str
    recorder: Recorder = field(default_factory=Recorder)

    @property
    def settings(self) -> dict[str, str]:
        return {CONN: self.azurite.connection_string, "IN_QUEUE": self.in_queue, "OUT_QUEUE": self.out_queue}

    def queue(self, name: str) -> QueueClient:
        return self.service.get_queue_client(name)

    def send(self, *texts: str, queue: str | None = None) -> None:
        client = self.queue(queue or self.in_queue)
        for text in texts:
            client.send_message(text)

    def drain(self, name: str) -> list[str]:
        """All messages currently visible in a queue (taken out), in arrival order; [] if it doesn't exist."""
        client, texts = self.queue(name), []
        try:
            while batch := list(next(client.receive_messages(messages_per_page=32).by_page(), [])):
                for message in batch:
                    texts.append(message.content)
                    client.delete_message(message)
        except ResourceNotFoundError:
            return []
        return texts

    def count(self, name: str) -> int:
        try:
            return self.queue(name).get_queue_properties().approximate_message_count or 0
        except ResourceNotFoundError:
            return -1  # no such queue

    def runner(self, app: func.FunctionApp | None = None, **kwargs: object) -> Runner:
        host_json = kwargs.pop("host_json", host())
        return Runner(app or make_app(self.recorder), settings=self.settings, host_json=host_json, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def stack(azurite: Azurite, queue_names: Callable[[str], str]) -> Iterator[Stack]:
    with QueueServiceClient.from_connection_string(azurite.connection_string) as service:
        s = Stack(azurite, service, queue_names("in"), queue_names("out"))
        s.queue(s.in_queue).create_queue()
        yield s


# -- configuration (no queues needed; host.json itself is tested in tests/devstack/test_host_config.py) -------


FAKE_CONN = (
    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
    "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
)


def test_setting_references_resolve_and_lowercase() -> None:
    app = make_app(Recorder(), trigger_queue="jobs-%ENV%")
    runner = Runner(app, settings={CONN: FAKE_CONN, "ENV": "Dev", "OUT_QUEUE": "out"}, host_json=host())
    assert runner.functions == {"Echo": "jobs-dev"}
    runner.stop()


def test_unresolved_setting_and_missing_connection_fail_at_construction() -> None:
    with pytest.raises(RunnerError, match="'%IN_QUEUE%' does not resolve"):
        Runner(make_app(Recorder()), settings={CONN: FAKE_CONN, "OUT_QUEUE": "out"})
    with pytest.raises(RunnerError, match=f"app setting '{CONN}'"):
        Runner(make_app(Recorder()), settings={"IN_QUEUE": "in", "OUT_QUEUE": "out"})
    with pytest.raises(RunnerError, match="identity-based"):
        Runner(
            make_app(Recorder()),
            settings={
                "IN_QUEUE": "jobs-in",
                "OUT_QUEUE": "out",
                f"{CONN}__queueServiceUri": "https://x.queue.core.windows.net",
            },
        )


def test_unsupported_bindings_are_refused() -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="in", connection=CONN)
    @app.blob_input(arg_name="blob", path="c/b", connection=CONN)
    def with_blob(msg: func.QueueMessage, blob: str) -> None: ...

    with pytest.raises(RunnerError, match="blob"):
        Runner(app, settings={CONN: FAKE_CONN})


def _output_annotated(annotation: object) -> func.FunctionApp:
    app = func.FunctionApp()

    def typed(msg: func.QueueMessage, out: object) -> None: ...

    typed.__annotations__["out"] = annotation  # the annotation under test, whatever mypy thinks of it
    output = app.queue_output(arg_name="out", queue_name="jobs-out", connection=CONN)
    trigger = app.queue_trigger(arg_name="msg", queue_name="jobs-in", connection=CONN)
    app.function_name(name="Typed")(trigger(output(typed)))
    return app


def test_an_output_annotation_the_worker_refuses_is_refused_with_its_message() -> None:
    with pytest.raises(RunnerError) as refused:
        Runner(_output_annotated(func.Out[dict[str, str]]), settings={CONN: FAKE_CONN})
    assert str(refused.value) == (
        'cannot load the Typed function: \'out\' binding type "queue" and dataType "None" in function.json do not '
        'match the corresponding function parameter\'s Python type annotation "dict"'
    )


@pytest.mark.parametrize(
    # typing.List, not list[str]: azure-functions' converter (which the worker asks) only knows the former.
    "annotation",
    [func.Out[str], func.Out[bytes], func.Out[func.QueueMessage], func.Out[typing.List[str]]],  # noqa: UP006
)
def test_output_annotations_the_worker_accepts_are_accepted(annotation: object) -> None:
    Runner(_output_annotated(annotation), settings={CONN: FAKE_CONN}).stop()


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (str, 'binding out is declared to have the "out" direction, but its annotation in Python is not a subclass'),
        (func.Out[int], 'Python type annotation "int"'),
    ],
)
def test_other_mismatches_are_refused_as_the_worker_refuses_them(annotation: object, message: str) -> None:
    with pytest.raises(RunnerError, match=message):
        Runner(_output_annotated(annotation), settings={CONN: FAKE_CONN})


def test_a_parameter_without_a_binding_is_refused_even_with_a_default() -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="jobs-in", connection=CONN)
    def extra(msg: func.QueueMessage, retries: int = 3) -> None: ...

    with pytest.raises(RunnerError) as refused:
        Runner(app, settings={CONN: FAKE_CONN})
    assert str(refused.value) == (
        "cannot load the extra function: the following parameters are declared in Python but not in "
        "function.json: {'retries'}"
    )


def test_a_trigger_annotated_as_an_output_is_refused() -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="jobs-in", connection=CONN)
    def wrong(msg: func.Out[str]) -> None: ...

    with pytest.raises(RunnerError, match='binding msg is declared to have the "in" direction'):
        Runner(app, settings={CONN: FAKE_CONN})


def test_indexing_does_not_log_the_http_auth_level_advice(caplog: pytest.LogCaptureFixture) -> None:
    settings = {CONN: FAKE_CONN, "IN_QUEUE": "jobs-in", "OUT_QUEUE": "out"}
    with caplog.at_level("INFO"):
        Runner(make_app(Recorder()), settings=settings).stop()
    assert not [r for r in caplog.records if "Auth level" in r.getMessage()]


def test_invalid_host_json_fails_at_construction_as_a_runner_error() -> None:
    settings = {CONN: FAKE_CONN, "IN_QUEUE": "jobs-in", "OUT_QUEUE": "out"}
    with pytest.raises(RunnerError, match=r"host\.json: batchSize must be between 1 and 32"):
        Runner(make_app(Recorder()), settings=settings, host_json=host(batchSize=33))


def test_runner_reads_options_through_devstack_host_config() -> None:
    settings = {CONN: FAKE_CONN, "IN_QUEUE": "jobs-in", "OUT_QUEUE": "out"}
    runner = Runner(make_app(Recorder()), settings=settings, host_json=REPO_ROOT / "host.json")
    assert runner.options == HostQueueOptions(8, 4, 2.0, 30.0, 5, "none")
    runner.stop()
    defaults = Runner(make_app(Recorder()), settings=settings, processor_count=3)
    assert defaults.options.new_batch_threshold == 16 // 2 * 3
    defaults.stop()


DEV_STORAGE = (
    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
    "QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
)


def test_use_development_storage_maps_to_azurite_like_core_tools() -> None:
    assert development_storage_connection_string("UseDevelopmentStorage=true", {}) == DEV_STORAGE.format(port=10001)
    assert development_storage_connection_string(" usedevelopmentstorage = TRUE ;", {}) == DEV_STORAGE.format(
        port=10001
    )
    port_set = {AZURITE_QUEUE_PORT_VARIABLE: "41234"}
    assert development_storage_connection_string("UseDevelopmentStorage=true", port_set) == DEV_STORAGE.format(
        port=41234
    )
    assert development_storage_connection_string(FAKE_CONN, port_set) == FAKE_CONN  # other strings: unchanged


def test_use_development_storage_port_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AZURITE_QUEUE_PORT_VARIABLE, raising=False)
    assert ":10001/" in development_storage_connection_string("UseDevelopmentStorage=true")
    monkeypatch.setenv(AZURITE_QUEUE_PORT_VARIABLE, "10101")
    assert ":10101/" in development_storage_connection_string("UseDevelopmentStorage=true")


@pytest.mark.parametrize(
    ("value", "port"),
    [
        ("UseDevelopmentStorage=false", ""),
        ("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://ipv4.fiddler", ""),
        ("UseDevelopmentStorage=true", "ten"),
        ("UseDevelopmentStorage=true", "70000"),
        ("UseDevelopmentStorage=true", "0"),
    ],
)
def test_use_development_storage_rejects_what_it_cannot_honour(value: str, port: str) -> None:
    with pytest.raises(RunnerError):
        development_storage_connection_string(value, {AZURITE_QUEUE_PORT_VARIABLE: port})


def test_runner_accepts_use_development_storage_from_the_settings() -> None:
    # local.settings.sample.json's value; the port may come from the app settings as well as the environment.
    settings = {
        CONN: "UseDevelopmentStorage=true",
        AZURITE_QUEUE_PORT_VARIABLE: "41235",
        "IN_QUEUE": "jobs-in",
        "OUT_QUEUE": "out",
    }
    runner = Runner(make_app(Recorder()), settings=settings, host_json=host())
    assert runner._listeners[0].queue.url == "http://127.0.0.1:41235/devstoreaccount1/jobs-in"
    runner.stop()
    with pytest.raises(RunnerError, match=rf"function Echo, \w+: {CONN}: only a bare"):
        Runner(make_app(Recorder()), settings={**settings, CONN: "UseDevelopmentStorage=false"})


def test_poison_queue_naming() -> None:
    assert poison_queue_name("jobs") == "jobs-poison"
    assert poison_queue_name("jobs-poison") is None
    assert poison_queue_name("a" * 56) == "a" * 56 + "-poison"
    assert poison_queue_name("a" * 57) is None
    # the contract's rule (shared/contract/limits.py), which the producer and the CLI check names with
    assert poison_queue_name("a" * TRIGGER_QUEUE_NAME_MAX) == "a" * TRIGGER_QUEUE_NAME_MAX + POISON_SUFFIX
    assert poison_queue_name("a" * (TRIGGER_QUEUE_NAME_MAX + 1)) is None


def test_a_queue_name_is_checked_by_the_contract_rule() -> None:
    """The runner refuses a trigger queue name the way the CLI does: one rule, one wording."""
    with pytest.raises(RunnerError) as refused:
        Runner(make_app(Recorder()), settings={CONN: FAKE_CONN, "IN_QUEUE": "jobs--in", "OUT_QUEUE": "out"})
    assert str(queue_name_problem("jobs--in")) in str(refused.value)


# -- against Azurite -------------------------------------------------------------------------------------------


def test_success_writes_outputs_then_deletes(stack: Stack) -> None:
    stack.send("hello", '{"x": 1}', "multi")
    with stack.runner() as runner:
        stats = runner.run_until_idle()
    assert sorted(stack.drain(stack.out_queue)) == sorted(["out:hello", 'out:{"x": 1}', "a", "b"])
    assert sorted(c.body for c in stack.recorder.calls) == [b"hello", b"multi", b'{"x": 1}']
    assert {c.dequeue_count for c in stack.recorder.calls} == {1}
    assert stack.count(stack.in_queue) == 0
    assert stack.count(stack.in_queue + "-poison") == -1
    assert (stats.invocations, stats.succeeded, stats.failed, stats.poisoned) == (3, 3, 0, 0)


def test_failures_are_retried_after_visibility_timeout(stack: Stack) -> None:
    stack.send("fail-until:3")
    with stack.runner(host_json=host(visibilityTimeout="00:00:01")) as runner:
        stats = runner.run_until_idle(timeout=20)
    calls = stack.recorder.calls
    assert [c.dequeue_count for c in calls] == [1, 2, 3]
    assert all(later.at - earlier.at >= 0.9 for earlier, later in itertools.pairwise(calls))
    assert stack.drain(stack.out_queue) == ["out:fail-until:3"], "outputs of failed attempts must be dropped"
    assert (stats.failed, stats.succeeded, stats.poisoned) == (2, 1, 0)
    assert stack.count(stack.in_queue + "-poison") == -1


def test_poison_after_max_dequeue_count_keeps_original_text(stack: Stack) -> None:
    stack.send(b64("raise"))
    with stack.runner(host_json=host(maxDequeueCount=3, messageEncoding="base64")) as runner:
        stats = runner.run_until_idle(timeout=20)
    assert [c.dequeue_count for c in stack.recorder.calls] == [1, 2, 3]
    assert stack.drain(stack.in_queue + "-poison") == [b64("raise")]
    assert stack.drain(stack.out_queue) == []
    assert (stats.failed, stats.poisoned) == (3, 1)


def test_base64_mode_decodes_input_and_encodes_output(stack: Stack) -> None:
    stack.send(b64("héllo ✓"))
    with stack.runner(host_json=host(messageEncoding="base64")) as runner:
        runner.run_until_idle()
    assert [c.body for c in stack.recorder.calls] == ["héllo ✓".encode()]
    assert stack.drain(stack.out_queue) == [b64("out:héllo ✓")]


def test_base64_mode_poisons_undecodable_messages_without_invoking(stack: Stack) -> None:
    not_utf8 = base64.b64encode(b"\xff\xfe").decode()
    stack.send('{"raw": "json"}', not_utf8)
    with stack.runner(host_json=host(messageEncoding="base64")) as runner:
        stats = runner.run_until_idle()
    assert stack.recorder.calls == []
    assert sorted(stack.drain(stack.in_queue + "-poison")) == sorted(['{"raw": "json"}', not_utf8])
    assert (stats.invocations, stats.decode_failures, stats.poisoned) == (0, 2, 2)


def test_message_beyond_max_dequeue_count_is_poisoned_before_user_code(stack: Stack) -> None:
    stack.send("hello")
    client = stack.queue(stack.in_queue)
    for _ in range(2):  # another consumer received it twice and gave it back
        [message] = list(client.receive_messages(max_messages=1))
        client.update_message(message, visibility_timeout=0)
    with stack.runner(host_json=host(maxDequeueCount=2)) as runner:
        stats = runner.run_until_idle()
    assert stack.recorder.calls == []
    assert stack.drain(stack.in_queue + "-poison") == ["hello"]
    assert stats.poisoned == 1


def test_concurrency_is_bounded_by_batch_size_plus_threshold(stack: Stack) -> None:
    # Two long and two short first: once the short ones finish, 2 in flight <= threshold, so the next batch of
    # 4 is fetched while the long ones still run: 6 at once, and never more.
    stack.send("sleep:1.2", "sleep:1.2", "sleep:0.05", "sleep:0.05", *["sleep:0.3"] * 12)
    with stack.runner(host_json=host(batchSize=4, newBatchThreshold=2)) as runner:
        stats = runner.run_until_idle(timeout=30)
    assert stats.succeeded == 16
    assert stack.recorder.max_active <= 6
    assert stats.max_in_flight <= 6
    assert stack.recorder.max_active == 6, "the threshold should trigger a fetch while two are still running"


def test_lock_is_renewed_while_a_function_runs(stack: Stack) -> None:
    stack.send("sleep:3.5")
    intruder = stack.queue(stack.in_queue)
    stolen: list[str] = []
    with stack.runner(lock_timeout=2) as runner:
        stack.recorder.wait_for_calls(1)
        while stack.recorder.active:
            stolen += [m.content for m in intruder.receive_messages(max_messages=1, visibility_timeout=1)]
            time.sleep(0.25)
        runner.run_until_idle()
    assert stolen == [], "the message became visible while its function was still running"
    assert len(stack.recorder.calls) == 1
    assert stack.drain(stack.out_queue) == ["out:sleep:3.5"]


def test_poison_named_trigger_has_no_poison_queue_and_keeps_message_invisible(
    stack: Stack, queue_names: Callable[[str], str]
) -> None:
    trigger = queue_names("jobs-poison")
    stack.queue(trigger).create_queue()
    stack.send("raise", queue=trigger)
    runner = stack.runner(make_app(stack.recorder, trigger_queue=trigger), host_json=host(maxDequeueCount=1))
    with runner:
        stack.recorder.wait_for_calls(1)
        time.sleep(0.5)
    assert runner.stats().failed == 1
    assert list(stack.queue(trigger).peek_messages()) == [], "left invisible, neither released nor moved"
    assert stack.count(trigger) == 1
    assert stack.count(trigger + "-poison") == -1


def test_graceful_stop_finishes_running_work_and_loses_nothing(stack: Stack) -> None:
    stack.send(*[f"sleep:0.{i}" for i in range(3, 9)])
    first = stack.runner(host_json=host(batchSize=2, newBatchThreshold=0))
    first.start()
    stack.recorder.wait_for_calls(1)
    assert first.stop(timeout=10) is True
    done_first = first.stats()
    assert done_first.failed == 0
    assert done_first.succeeded == len(stack.recorder.calls) >= 1

    started = time.monotonic()
    with stack.runner() as second:
        second.run_until_idle(timeout=15)
    assert time.monotonic() - started < 10, "a released message must not wait for the 10-minute lock"
    bodies = [c.body.decode() for c in stack.recorder.calls]
    assert sorted(bodies) == sorted(f"sleep:0.{i}" for i in range(3, 9)), "each message exactly once"
    assert len(stack.drain(stack.out_queue)) == 6


def test_two_functions_chain_through_a_queue(stack: Stack, queue_names: Callable[[str], str]) -> None:
    app = func.FunctionApp()
    seen: list[bytes] = []

    @app.function_name(name="First")
    @app.queue_trigger(arg_name="msg", queue_name="%IN_QUEUE%", connection=CONN)
    @app.queue_output(arg_name="mid", queue_name="%MID_QUEUE%", connection=CONN)
    def first(msg: func.QueueMessage, mid: func.Out[bytes]) -> None:
        mid.set(msg.get_body().upper())

    @app.function_name(name="Second")
    @app.queue_trigger(arg_name="item", queue_name="%MID_QUEUE%", connection=CONN)
    def second(item: func.QueueMessage) -> None:
        seen.append(item.get_body())

    stack.send(b64("chained"))
    settings = {**stack.settings, "MID_QUEUE": queue_names("mid")}
    with Runner(app, settings=settings, host_json=host(messageEncoding="base64")) as runner:
        runner.run_until_idle()
        assert runner.stats("Second").succeeded == 1
    assert seen == [b"CHAINED"]


def test_cli_runs_an_app_until_sigint(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(
        textwrap.dedent(f"""
        import azure.functions as func
        app = func.FunctionApp()

        @app.queue_trigger(arg_name="msg", queue_name="%IN_QUEUE%", connection="{CONN}")
        @app.queue_output(arg_name="out", queue_name="%OUT_QUEUE%", connection="{CONN}")
        def handle(msg: func.QueueMessage, out: func.Out[str]) -> None:
            out.set("cli:" + msg.get_body().decode())
    """)
    )
    (tmp_path / "host.json").write_text(json.dumps(host()))
    # local.settings.json supplies the values; the environment wins where both are set.
    values = {"IN_QUEUE": stack.in_queue, "OUT_QUEUE": "wrong-queue", CONN: stack.azurite.connection_string}
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": values}))
    env = {**os.environ, "OUT_QUEUE": stack.out_queue, "PYTHONPATH": str(REPO_ROOT)}
    env.pop(CONN, None)
    stack.send("ping")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.runner", "--app", "cli_app", "--log-level", "WARNING"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        out: list[str] = []
        while not out and time.monotonic() < deadline and proc.poll() is None:
            out = stack.drain(stack.out_queue)
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert out == ["cli:ping"], stderr
    assert proc.returncode == 0, stderr
    assert stdout.startswith("Runner up: handle <- ")
    assert "batchSize 8, newBatchThreshold 4, maxPollingInterval 0.2 s, visibilityTimeout 0 s" in stdout
    assert "HostQueueOptions(" not in stdout


def test_the_worker_s_thread_pool_bounds_what_runs_at_once(stack: Stack) -> None:
    """The host may start 24 invocations, but a sync function runs on PYTHON_THREADPOOL_THREAD_COUNT threads."""
    stack.send(*["sleep:0.3"] * 8)
    settings = {**stack.settings, "PYTHON_THREADPOOL_THREAD_COUNT": "2"}
    runner = Runner(make_app(stack.recorder), settings=settings, host_json=host(batchSize=8, newBatchThreshold=4))
    with runner:
        stats = runner.run_until_idle(timeout=30)
    assert stats.succeeded == 8
    assert stats.max_in_flight > 2  # the host started more: they waited for a thread, holding their messages
    assert stack.recorder.max_active == 2


@pytest.mark.parametrize(
    ("settings", "cpus", "threads"),
    [({}, 1, 5), ({}, 2, 6), ({}, 64, 32), ({"PYTHON_THREADPOOL_THREAD_COUNT": "24"}, 1, 24)],
)
def test_the_thread_count_is_the_worker_s(settings: dict[str, str], cpus: int, threads: int) -> None:
    assert sync_thread_count(settings, cpus) == threads


def test_a_bad_thread_count_is_refused() -> None:
    with pytest.raises(RunnerError, match="PYTHON_THREADPOOL_THREAD_COUNT"):
        sync_thread_count({"PYTHON_THREADPOOL_THREAD_COUNT": "0"})
