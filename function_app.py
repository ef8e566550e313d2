"""Azure Functions entry point (Python v2 model): binds the queues and timers to `shared/`.

This module only adapts: the trigger hands over the message, the pipeline decides and writes
the outcome's JSON text (checked to fit a queue message), and that text goes out through the
output binding, which the host writes only if this function returns. A `TransientError`
propagates so that the host redelivers the message. The timers record the queue depths (every
minute) and purge the audit trail past its retention (daily).
"""

import azure.functions as func

from shared.pipeline import Delivery
from shared.wiring import operations, pipeline

app = func.FunctionApp()


@app.function_name(name="process_certificate_state_update")
@app.queue_trigger(arg_name="msg", queue_name="%INPUT_QUEUE_NAME%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="outcome", queue_name="%RESULT_QUEUE_NAME%", connection="AzureWebJobsStorage")
def process_certificate_state_update(msg: func.QueueMessage, outcome: func.Out[str]) -> None:
    """Validate one update, PATCH Graph, and emit its outcome."""
    delivery = Delivery(message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1, enqueued_at=msg.insertion_time)
    result = pipeline().handle(msg.get_body(), delivery)
    if result is not None:  # None: deferred, a delayed copy is on the queue and this delivery completes
        outcome.set(result.text)


@app.function_name(name="record_queue_depths")
@app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
def record_queue_depths(timer: func.TimerRequest) -> None:
    """Record the approximate message counts of the input, poison and result queues."""
    operations().record_queue_depths()


@app.function_name(name="purge_audit_trail")
@app.timer_trigger(arg_name="timer", schedule="0 17 3 * * *")
def purge_audit_trail(timer: func.TimerRequest) -> None:
    """Delete the audit rows older than AUDIT_RETENTION_DAYS."""
    operations().purge_audit()
