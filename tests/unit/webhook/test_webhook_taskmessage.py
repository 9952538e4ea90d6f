"""The hand-built resolve message is the message Celery itself would publish (task protocol 2)."""

from __future__ import annotations

import base64
import json
from typing import Any

from celery import Celery

from core.queues import CALLBACK_QUEUE, RESOLVE_TASK
from webhook.taskmessage import _document, default_origin, task_message

PER_MESSAGE = ("reply_to", "delivery_tag")  # Celery's reply address and kombu's tag: fresh per sender/message


def celery_published(token_id: int) -> dict[str, Any]:
    """What `send_task` puts on a kombu virtual transport (the Redis transport stores the same dict)."""
    app = Celery("reference", broker="memory://", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue=CALLBACK_QUEUE)
    app.send_task(RESOLVE_TASK, args=[token_id], queue=CALLBACK_QUEUE, retry=False)
    with app.connection_for_read() as conn:
        message: dict[str, Any] = conn.default_channel._get(CALLBACK_QUEUE)
    return message


def without_per_message_fields(message: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in message["properties"].items() if k not in PER_MESSAGE}
    return {**message, "properties": props}


def test_message_equals_celerys_apart_from_per_message_ids():
    # given the message Celery publishes for resolve(42)
    reference = celery_published(42)
    # when we build ours with the same task id and origin
    ours = json.loads(task_message(RESOLVE_TASK, [42], queue=CALLBACK_QUEUE,
                                   origin=reference["headers"]["origin"], task_id=reference["headers"]["id"]))
    # then every field is the same: envelope, headers, body encoding, routing
    assert without_per_message_fields(ours) == without_per_message_fields(reference)
    assert ours["properties"]["delivery_tag"]
    assert ours["properties"]["delivery_tag"] != reference["properties"]["delivery_tag"]


def test_body_carries_the_token_id_as_the_only_argument():
    message = json.loads(task_message(RESOLVE_TASK, [7], queue=CALLBACK_QUEUE, origin=default_origin()))
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([7], {})
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    assert message["headers"]["argsrepr"] == "[7]"


def test_every_message_has_its_own_task_id_and_delivery_tag():
    first, second = (json.loads(task_message(RESOLVE_TASK, [1], queue=CALLBACK_QUEUE, origin="o"))
                     for _ in range(2))
    assert first["headers"]["id"] != second["headers"]["id"]
    assert first["headers"]["root_id"] == first["headers"]["id"] == first["properties"]["correlation_id"]
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]


def test_default_origin_names_this_process_like_celery():
    from celery.utils.nodenames import anon_nodename

    assert default_origin() == anon_nodename()


def test_the_cached_document_equals_encoding_the_whole_message(monkeypatch):
    # given values that need JSON escaping in every per-message field and in the cached ones
    task, queue, origin = 'q"ay.t\\ask', "call\nbacks", "gen1@h\u00f6st"
    args = ['tok"en\\', 3]
    message = task_message(task, args, queue=queue, origin=origin, task_id="id-1")
    # then it is the document json.dumps writes for the same values (apart from the fresh delivery tag)
    decoded = json.loads(message)
    tag = decoded["properties"]["delivery_tag"]
    body = base64.b64encode(json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                   "chord": None}]).encode()).decode("ascii")
    expected = json.dumps(_document(task, queue, origin, body, "id-1", repr(args), tag))
    assert message == expected
