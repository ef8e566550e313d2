"""The one description of the local stack (`StackSpec`): what the demo, the tests and `devstack up` start."""

from __future__ import annotations

from devstack.stack import MULTITENANT_QUEUE_SETTINGS, StackSpec


def on_parts(spec: StackSpec, more: dict[str, str] | None = None) -> dict[str, str]:
    """The app settings `spec` gives the function on a set of (made-up) running parts."""
    return spec.app_settings(
        storage="UseDevelopmentStorage=true",
        input_queue="in-q",
        result_queue="out-q",
        graph_base_url="http://127.0.0.1:9/beta",
        identity={"IDENTITY_ENDPOINT": "http://127.0.0.1:8/msi/token", "IDENTITY_HEADER": "h"},
        more=more,
    )


def test_the_function_is_paced_for_the_limit_the_simulator_enforces():
    """Graph's limit goes to the simulator and, less one write, to the function's budget: from one place."""
    spec = StackSpec(write_limit=10, write_window_s=2.0, instances=2)
    args = spec.simulator_args()
    assert (args[args.index("--write-limit") + 1], args[args.index("--write-window") + 1]) == ("10", "2")
    settings = on_parts(spec)
    assert (settings["GRAPH_WRITE_BUDGET"], settings["GRAPH_WRITE_WINDOW_SECONDS"]) == ("9", "2")
    assert settings["GRAPH_PACING_MAX_INSTANCES"] == "2"


def test_the_parts_settings_fill_the_sample_and_overrides_win():
    overrides = {"GRAPH_WRITE_BUDGET": "100", "INPUT_QUEUE_NAME": "mine"}
    settings = on_parts(StackSpec(overrides=overrides), more={"AUDIT_TABLE_NAME": "audit1"})
    assert settings["FUNCTIONS_WORKER_RUNTIME"] == "python"  # local.settings.sample.json's, as `func start` needs
    assert settings["CREDENTIAL_MODE"] == "managedIdentity"  # the emulator, not the sample's `az login`
    assert (settings["AzureWebJobsStorage"], settings["RESULT_QUEUE_NAME"]) == ("UseDevelopmentStorage=true", "out-q")
    assert settings["GRAPH_BASE_URL"] == "http://127.0.0.1:9/beta"
    assert settings["IDENTITY_HEADER"] == "h"
    assert settings["AUDIT_TABLE_NAME"] == "audit1"
    assert (settings["GRAPH_WRITE_BUDGET"], settings["INPUT_QUEUE_NAME"]) == ("100", "mine")


def test_served_tenants_get_the_queue_concurrency_infra_gives_them():
    alone = on_parts(StackSpec())
    served = on_parts(StackSpec(tenants={"a0000000-0000-4000-8000-00000000000a": None}))
    assert MULTITENANT_QUEUE_SETTINGS.items() <= served.items()
    assert not MULTITENANT_QUEUE_SETTINGS.keys() & alone.keys()
    assert (alone["PYTHON_THREADPOOL_THREAD_COUNT"], served["PYTHON_THREADPOOL_THREAD_COUNT"]) == ("12", "24")
