"""function_app.py as it would read with msgraph-beta-sdk as the Graph client (cold-start comparison).

Only imported in bench/.venv-sdk. Same trigger, same outcome, same lazily built pipeline.
"""

from __future__ import annotations

from functools import cache

import azure.functions as func

from bench.sdk_variant import build_sdk_pipeline
from shared.host_config import queue_options
from shared.pipeline import CertStatePipeline, Delivery
from shared.settings import load_settings

app = func.FunctionApp()


@cache
def pipeline() -> CertStatePipeline:
    """The process's pipeline, built on first use."""
    return build_sdk_pipeline(load_settings(), queue_options())


@app.function_name(name="process_certificate_state_update")
@app.queue_trigger(arg_name="msg", queue_name="%INPUT_QUEUE_NAME%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="outcome", queue_name="%RESULT_QUEUE_NAME%", connection="AzureWebJobsStorage")
def process_certificate_state_update(msg: func.QueueMessage, outcome: func.Out[str]) -> None:
    """Validate one update, PATCH Graph through the SDK, and emit its outcome."""
    delivery = Delivery(message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1)
    result = pipeline().handle(msg.get_body(), delivery)
    if result is not None:
        outcome.set(result.text)
