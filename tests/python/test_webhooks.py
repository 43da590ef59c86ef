"""Webhook deliveries from Flagpole, captured by a local receiver and checked
with the SDK's `webhooks.verify_event`, as a Python application would.

verify_event first runs verify_header (`WorkOS-Signature: t=<unix ms>,
v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, split on exactly ", ", at most
180 s old), then parses the body with workos.events.models.EventSchema,
which dispatches on `event` to FlagCreated, FlagUpdated, FlagRuleUpdated
or FlagDeleted.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from workos.common.models.event_context_actor import EventContextActor
from workos.common.models.flag_created import FlagCreated
from workos.common.models.flag_created_data import FlagCreatedData
from workos.common.models.flag_deleted import FlagDeleted
from workos.common.models.flag_rule_updated import FlagRuleUpdated
from workos.common.models.flag_updated import FlagUpdated

# The receiver listens on loopback, which Flagpole's webhooks refuse unless
# the operator allows it (for the server and for `flagpole webhooks create`).
FLAGPOLE_ENV = {"FLAGPOLE_WEBHOOK_ALLOW": "127.0.0.1"}


class Receiver:
    """Records every POST and answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[dict] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.changed:
                    receiver.deliveries.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                    )
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format, *args):  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/flagpole"

    def next(self, predicate, timeout: float = 20) -> dict:
        """Waits for a delivery whose parsed event matches."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for delivery in self.deliveries:
                    if predicate(json.loads(delivery["body"])):
                        return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    got = "\n".join(d["body"].decode() for d in self.deliveries)
                    raise AssertionError(f"no matching delivery; got:\n{got}")
                self.changed.wait(min(left, 0.25))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def header(delivery: dict, name: str) -> str:
    return next(v for k, v in delivery["headers"].items() if k.lower() == name.lower())


@pytest.fixture(scope="module")
def hooks(flagpole):
    receiver = Receiver()
    secret = flagpole.cli(
        "webhooks", "create",
        "--environment", "production",
        "--url", receiver.url,
        "--events", "flag.created,flag.updated,flag.rule_updated,flag.deleted",
    )
    assert len(secret) >= 32, "the CLI prints the signing secret"
    yield receiver, secret
    receiver.close()


@pytest.fixture(scope="module")
def hooked(flagpole, hooks):
    flagpole.api(
        "POST",
        "/api/v1/feature-flags",
        {"name": "Hooked", "slug": "hooked", "description": "Delivered to the receiver."},
    )
    return "hooked"


def verify(workos, delivery: dict, secret: str):
    return workos.webhooks.verify_event(
        event_body=delivery["body"],
        event_signature=header(delivery, "WorkOS-Signature"),
        secret=secret,
    )


def assert_flag_data(data, flagpole, **expected) -> None:
    assert isinstance(data, FlagCreatedData)
    assert data.object == "feature_flag"
    assert data.id.startswith("flag_")
    assert isinstance(data.environment_id, str) and data.environment_id
    assert data.owner is None
    assert isinstance(data.tags, list)
    assert data.created_at.tzinfo is not None and data.updated_at.tzinfo is not None
    for name, value in expected.items():
        assert getattr(data, name) == value, name


def assert_context(context, flagpole) -> None:
    assert context.client_id == flagpole.client_id, "the environment's client id"
    assert isinstance(context.actor, EventContextActor)
    assert isinstance(context.actor.id, str) and context.actor.id
    assert context.actor.source.value == "api", "changed with an API key"
    assert context.actor.name is None or isinstance(context.actor.name, str)


def test_the_signature_verifies_and_forgeries_are_refused(workos, hooks, hooked):
    receiver, secret = hooks
    delivery = receiver.next(lambda e: e["event"] == "flag.created" and e["data"]["slug"] == hooked)
    assert re.search(r"application/json", header(delivery, "Content-Type"))
    signature = header(delivery, "WorkOS-Signature")
    assert re.fullmatch(r"t=\d{13}, v1=[0-9a-f]{64}", signature), signature

    workos.webhooks.verify_header(
        event_body=delivery["body"], event_signature=signature, secret=secret
    )
    with pytest.raises(ValueError):
        workos.webhooks.verify_header(
            event_body=delivery["body"], event_signature=signature, secret="not-the-secret"
        )
    forged = delivery["body"].replace(b'"slug":"hooked"', b'"slug":"forged"')
    assert forged != delivery["body"]
    with pytest.raises(ValueError):
        workos.webhooks.verify_event(event_body=forged, event_signature=signature, secret=secret)


def test_flag_created_parses_as_the_sdks_event(flagpole, workos, hooks, hooked):
    receiver, secret = hooks
    delivery = receiver.next(lambda e: e["event"] == "flag.created" and e["data"]["slug"] == hooked)
    event = verify(workos, delivery, secret)
    assert isinstance(event, FlagCreated), type(event)
    assert event.object == "event"
    assert event.event == "flag.created"
    assert event.id
    assert event.created_at.tzinfo is not None
    assert_flag_data(
        event.data, flagpole, slug=hooked, name="Hooked",
        description="Delivered to the receiver.", enabled=False, default_value=False,
    )
    assert_context(event.context, flagpole)


def test_a_rule_change_arrives_as_flag_rule_updated(flagpole, workos, hooks, hooked):
    receiver, secret = hooks
    acme = flagpole.api("POST", "/api/v1/organizations", {"name": "Acme Inc", "external_id": "acme"})
    ada = flagpole.api("POST", "/api/v1/users", {"email": "ada@acme.example", "external_id": "ada"})
    flagpole.api(
        "PUT",
        f"/api/v1/feature-flags/{hooked}/environments/production",
        {"mode": "some", "targets": [{"type": "organization", "id": "acme"}, {"type": "user", "id": "ada"}]},
    )
    delivery = receiver.next(
        lambda e: e["event"] == "flag.rule_updated" and e["data"]["slug"] == hooked
    )
    event = verify(workos, delivery, secret)
    assert isinstance(event, FlagRuleUpdated), type(event)
    assert_flag_data(event.data, flagpole, slug=hooked, default_value=False)
    assert_context(event.context, flagpole)
    context = event.context
    assert context.access_type.value == "some"
    assert [(o.id, o.name) for o in context.configured_targets.organizations] == [(acme["id"], "Acme Inc")]
    assert [(u.id, u.email) for u in context.configured_targets.users] == [(ada["id"], "ada@acme.example")]
    previous = context.previous_attributes.context
    assert previous is not None and previous.access_type.value == "none"

    flagpole.api("PUT", f"/api/v1/feature-flags/{hooked}/environments/production", {"mode": "all"})
    delivery = receiver.next(
        lambda e: e["event"] == "flag.rule_updated"
        and e["data"]["slug"] == hooked
        and e["data"]["default_value"] is True
    )
    event = verify(workos, delivery, secret)
    assert isinstance(event, FlagRuleUpdated)
    assert event.data.default_value is True
    assert event.context.access_type.value == "all"
    assert event.context.previous_attributes.context.access_type.value == "some"


def test_switching_a_flag_on_arrives_as_flag_updated(flagpole, workos, hooks, hooked):
    receiver, secret = hooks
    workos.feature_flags.enable_feature_flag(hooked)
    delivery = receiver.next(
        lambda e: e["event"] == "flag.updated" and e["data"]["slug"] == hooked and e["data"]["enabled"] is True
    )
    event = verify(workos, delivery, secret)
    assert isinstance(event, FlagUpdated), type(event)
    assert_flag_data(event.data, flagpole, slug=hooked, enabled=True)
    assert_context(event.context, flagpole)
    previous = event.context.previous_attributes
    assert previous is not None and previous.data is not None and previous.data.enabled is False


def test_a_target_added_names_the_previous_targets(flagpole, workos, hooks):
    # FlagRuleUpdatedContext.previous_attributes.context.configured_targets:
    # "The previous configured targets for the flag rule".
    receiver, secret = hooks
    flagpole.api("POST", "/api/v1/feature-flags", {"name": "Retargeted", "slug": "retargeted"})
    initech = flagpole.api("POST", "/api/v1/organizations", {"name": "Initech", "external_id": "initech"})
    cy = flagpole.api("POST", "/api/v1/users", {"email": "cy@initech.example", "external_id": "cy"})
    flagpole.api(
        "PUT",
        "/api/v1/feature-flags/retargeted/environments/production",
        {"mode": "some", "targets": [{"type": "organization", "id": "initech"}]},
    )
    workos.feature_flags.add_flag_target(resource_id=cy["id"], slug="retargeted")
    delivery = receiver.next(
        lambda e: e["event"] == "flag.rule_updated"
        and e["data"]["slug"] == "retargeted"
        and len(e["context"].get("configured_targets", {}).get("users", [])) == 1
    )
    event = verify(workos, delivery, secret)
    assert isinstance(event, FlagRuleUpdated), type(event)
    assert event.context.access_type.value == "some"
    assert [(u.id, u.email) for u in event.context.configured_targets.users] == [
        (cy["id"], "cy@initech.example")
    ]
    assert [(o.id, o.name) for o in event.context.configured_targets.organizations] == [
        (initech["id"], "Initech")
    ]
    previous = event.context.previous_attributes.context
    assert previous is not None, "the targets changed, so their previous value is given"
    assert previous.configured_targets is not None
    assert [o.id for o in previous.configured_targets.organizations] == [initech["id"]]
    assert previous.configured_targets.users == []


def test_a_rename_arrives_as_flag_updated_with_the_previous_name(flagpole, workos, hooks, hooked):
    receiver, secret = hooks
    flagpole.api("PATCH", f"/api/v1/feature-flags/{hooked}", {"name": "Hooked again"})
    delivery = receiver.next(
        lambda e: e["event"] == "flag.updated" and e["data"]["name"] == "Hooked again"
    )
    event = verify(workos, delivery, secret)
    assert isinstance(event, FlagUpdated), type(event)
    assert_flag_data(event.data, flagpole, slug=hooked, name="Hooked again")
    assert_context(event.context, flagpole)
    previous = event.context.previous_attributes
    assert previous is not None and previous.data is not None
    assert previous.data.name == "Hooked"


def test_deleting_an_archived_flag_arrives_as_flag_deleted(flagpole, workos, hooks):
    receiver, secret = hooks
    flagpole.api("POST", "/api/v1/feature-flags", {"name": "Doomed", "slug": "doomed"})
    flagpole.api("POST", "/api/v1/feature-flags/doomed/archive", {})
    flagpole.api("DELETE", "/api/v1/feature-flags/doomed")
    delivery = receiver.next(lambda e: e["event"] == "flag.deleted" and e["data"]["slug"] == "doomed")
    event = verify(workos, delivery, secret)
    assert isinstance(event, FlagDeleted), type(event)
    assert_flag_data(event.data, flagpole, slug="doomed", name="Doomed")
    assert_context(event.context, flagpole)
