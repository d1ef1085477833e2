"""Contract tests of the HubSpot connector against a loopback server playing HubSpot.

Shapes follow the HubSpot developer docs as published in 2025: CRM API v3
objects (list with ``after``, search with ``filterGroups``, get, create,
PATCH), CRM pipelines v3, note associations (HUBSPOT_DEFINED type 202 =
note to contact), the error body (``status``, ``message``, ``correlationId``,
``category``) and "API usage guidelines and limits" (burst limit per 10 s,
``X-HubSpot-RateLimit-*`` headers, search at 5 requests/s, 429 +
``Retry-After``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from contract_server import ContractServer, FakeClock, Recorded, Reply
from keyring_service import NEEDS_DAEMON, MemoryKeyring

from app.integrations.base import Account, ConnectorContext
from app.integrations.errors import (
    ActionError,
    CertificateError,
    ConnectorAuthError,
    RateLimitedError,
    RemoteRejectedError,
)
from app.integrations.hubspot import HubSpotConnector
from app.memory.db import Database
from app.secrets import SecretStore

TOKEN = "pat-eu1-0c6f1d2e-contract-token-never-logged"
SEARCH = r"/crm/v3/objects/contacts/search"


def contact(cid: str, email: str, modified: str = "2025-03-01T10:00:00.000Z") -> dict[str, object]:
    props = {"email": email, "firstname": "Ada", "lastname": "L", "lastmodifieddate": modified}
    return {"id": cid, "properties": props, "updatedAt": modified}


@pytest.fixture
def server() -> Iterator[ContractServer]:
    with ContractServer() as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def connector_for(url: str, db: Database, clock: FakeClock, secrets: SecretStore | None = None):  # type: ignore[no-untyped-def]
    if secrets is None:
        secrets = SecretStore(MemoryKeyring())  # type: ignore[arg-type]
        account = Account("hs1", "hubspot", "Work", {"base_url": url})
        secrets.set(account.secret_ref("token"), TOKEN)
    account = Account("hs1", "hubspot", "Work", {"base_url": url})
    context = ConnectorContext(db=db, secrets=secrets)
    return HubSpotConnector(account, context, sleep=clock.sleep, clock=clock)


@pytest.fixture
def hubspot(server: ContractServer, db: Database, clock: FakeClock) -> Iterator[HubSpotConnector]:
    conn = connector_for(server.url, db, clock)
    yield conn
    conn.close()


def test_contract_connection_sends_bearer_token_and_never_logs_it(
    server: ContractServer, hubspot: HubSpotConnector, caplog: pytest.LogCaptureFixture
) -> None:
    server.route(
        "GET", "/crm/v3/objects/contacts", Reply(body={"results": [contact("1", "a@x.io")]})
    )
    caplog.set_level(logging.DEBUG)
    report = hubspot.test_connection()
    assert report.ok, report.summary
    [request] = server.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.query["limit"] == ["1"]
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(hubspot.client)


def test_contract_search_filter_shapes(server: ContractServer, hubspot: HubSpotConnector) -> None:
    server.route("POST", SEARCH, Reply(body={"total": 1, "results": [contact("7", "ada@x.io")]}))
    by_email = hubspot.search_contacts({"query": "ada@x.io"})
    hubspot.search_contacts({"query": "Lovelace", "limit": 5})
    assert by_email == [
        {"id": "7", "email": "ada@x.io", "firstname": "Ada", "lastname": "L", "company": None,
         "phone": None}
    ]  # fmt: skip
    first, second = (r.body for r in server.requests)
    assert first["filterGroups"] == [
        {"filters": [{"propertyName": "email", "operator": "EQ", "value": "ada@x.io"}]}
    ]
    assert "email" in first["properties"]
    assert second["query"] == "Lovelace" and second["limit"] == 5
    assert "filterGroups" not in second


def test_contract_429_waits_retry_after_then_succeeds(
    server: ContractServer, hubspot: HubSpotConnector, clock: FakeClock
) -> None:
    server.replies(
        "GET",
        "/crm/v3/objects/contacts/42",
        Reply(429, {"status": "error", "category": "RATE_LIMITS"}, {"Retry-After": "7"}),
        Reply(body=contact("42", "a@x.io")),
    )
    assert hubspot.get_contact({"id": "42"})["id"] == "42"  # type: ignore[index]
    assert clock.sleeps == [7.0]
    assert len(server.requests) == 2


def test_contract_repeated_429_raises_rate_limited_with_retry_after(
    server: ContractServer, hubspot: HubSpotConnector, clock: FakeClock
) -> None:
    server.route("GET", "/crm/v3/objects/contacts/42", Reply(429, {}, {"Retry-After": "3"}))
    with pytest.raises(RateLimitedError) as caught:
        hubspot.get_contact({"id": "42"})
    assert caught.value.retry_after_s == 3.0
    assert clock.sleeps == [3.0] * 4  # the default Backoff retries four times
    assert len(server.requests) == 5


def test_contract_error_body_mapped_without_echoing_data(
    server: ContractServer, hubspot: HubSpotConnector
) -> None:
    body = {
        "status": "error",
        "message": "Property values were not valid: ada@x.io is taken",
        "correlationId": "a43683b0-5717-4ceb-80b4-104d02915d8c",
        "category": "VALIDATION_ERROR",
    }
    server.route("GET", "/crm/v3/objects/contacts/9", Reply(400, body))
    with pytest.raises(RemoteRejectedError) as caught:
        hubspot.get_contact({"id": "9"})
    text = str(caught.value)
    assert "VALIDATION_ERROR" in text and "a43683b0-5717" in text
    assert "ada@x.io" not in text and "\n" not in text


def test_contract_401_is_an_auth_error(server: ContractServer, hubspot: HubSpotConnector) -> None:
    body = {"status": "error", "category": "INVALID_AUTHENTICATION", "correlationId": "c-1"}
    server.route("GET", "/crm/v3/objects/contacts/1", Reply(401, body))
    with pytest.raises(ConnectorAuthError, match="INVALID_AUTHENTICATION"):
        hubspot.get_contact({"id": "1"})
    assert not hubspot.test_connection().ok


def test_contract_rate_limit_headers_correct_the_bucket(
    server: ContractServer, hubspot: HubSpotConnector
) -> None:
    headers = {
        "X-HubSpot-RateLimit-Max": "190",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        "X-HubSpot-RateLimit-Remaining": "3",
    }
    server.route("GET", "/crm/v3/objects/contacts/1", Reply(200, contact("1", "a@x.io"), headers))
    hubspot.get_contact({"id": "1"})
    bucket = hubspot.client.bucket
    assert bucket.capacity == 190 and bucket.rate_per_s == pytest.approx(19.0)
    assert bucket.available == pytest.approx(3.0)


def test_contract_search_is_paced_at_five_per_second(
    server: ContractServer, hubspot: HubSpotConnector, clock: FakeClock
) -> None:
    server.route("POST", SEARCH, Reply(body={"results": []}))
    for _ in range(6):
        hubspot.search_contacts({"query": "x"})
    assert clock.sleeps == [pytest.approx(0.2)]


def test_contract_sync_pages_and_filters_by_last_modified(
    server: ContractServer, hubspot: HubSpotConnector, db: Database
) -> None:
    pages = [
        Reply(body={"results": [contact("1", "a@x.io", "2025-03-01T10:00:00Z")],
                    "paging": {"next": {"after": "1"}}}),
        Reply(body={"results": [contact("2", "b@x.io", "2025-03-02T11:00:00Z")]}),
        Reply(body={"results": [contact("2", "b@x.io", "2025-03-02T11:00:00Z")]}),
    ]  # fmt: skip
    server.replies("POST", SEARCH, *pages)
    assert hubspot.sync_contacts() == 2
    assert hubspot.sync() == {"contacts": 1}
    first, second, third = (r.body for r in server.requests)
    assert "filterGroups" not in first and first["sorts"][0]["direction"] == "ASCENDING"
    assert second["after"] == "1"
    newest_ms = str(int(datetime(2025, 3, 2, 11, tzinfo=UTC).timestamp() * 1000))
    assert third["filterGroups"][0]["filters"] == [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": newest_ms}
    ]
    rows = db.fetchall("SELECT id, email FROM hubspot_contacts ORDER BY id")
    assert rows == [("1", "a@x.io"), ("2", "b@x.io")]


def test_contract_create_contact_searches_first_and_never_creates_twice(
    server: ContractServer, hubspot: HubSpotConnector
) -> None:
    created: list[Recorded] = []

    def search(_req: Recorded) -> Reply:
        found = [contact("55", "new@x.io")] if created else []
        return Reply(body={"total": len(found), "results": found})

    def create(req: Recorded) -> Reply:
        created.append(req)
        return Reply(201, contact("55", "new@x.io"))

    server.route("POST", SEARCH, search)
    server.route("POST", "/crm/v3/objects/contacts", create)
    action = {a.name: a for a in hubspot.actions()}["hubspot.create_contact"]
    prepared = action.prepare({"email": "New@X.io", "firstname": "Nia"})
    assert prepared.payload == {"properties": {"email": "new@x.io", "firstname": "Nia"}}
    assert action.reconcile(prepared) is None
    outcome = action.execute(prepared)
    assert outcome.done and outcome.external_id == "55"
    again = action.execute(prepared)  # e.g. the outbox retried after a crash
    assert again.external_id == "55"
    assert len(created) == 1 and created[0].body == {"properties": prepared.payload["properties"]}


def _deal_routes(server: ContractServer, stage: list[str]) -> None:
    pipelines = {"results": [{"id": "default", "stages": [
        {"id": "appointmentscheduled", "label": "Appointment"},
        {"id": "closedwon", "label": "Closed won"},
    ]}]}  # fmt: skip
    server.route("GET", "/crm/v3/pipelines/deals", Reply(body=pipelines))
    server.route(
        "GET",
        "/crm/v3/objects/deals/d1",
        lambda _r: Reply(body={"id": "d1", "properties": {"dealname": "Big", "pipeline":
                               "default", "dealstage": stage[0]}}),
    )  # fmt: skip

    def patch(req: Recorded) -> Reply:
        stage[0] = req.body["properties"]["dealstage"]
        return Reply(body={"id": "d1"})

    server.route("PATCH", "/crm/v3/objects/deals/d1", patch)


def test_contract_update_deal_stage_prepare_execute_reconcile(
    server: ContractServer, hubspot: HubSpotConnector
) -> None:
    stage = ["appointmentscheduled"]
    _deal_routes(server, stage)
    action = {a.name: a for a in hubspot.actions()}["hubspot.update_deal_stage"]
    with pytest.raises(ActionError, match="not in the deal's pipeline"):
        action.prepare({"deal_id": "d1", "stage": "nosuchstage"})
    prepared = action.prepare({"deal_id": "d1", "stage": "closedwon"})
    assert prepared.preview == "Move deal Big from Appointment to Closed won"
    assert action.reconcile(prepared) is None
    assert action.execute(prepared).done
    [patch] = server.matching("PATCH", "/crm/v3/objects/deals/d1")
    assert patch.body == {"properties": {"dealstage": "closedwon"}}
    assert action.reconcile(prepared) is not None


def test_contract_add_note_with_association_and_marker_reconcile(
    server: ContractServer, hubspot: HubSpotConnector
) -> None:
    notes: list[dict[str, object]] = []

    def create(req: Recorded) -> Reply:
        notes.append({"id": "n1", "properties": req.body["properties"]})
        return Reply(201, notes[-1])

    def search(req: Recorded) -> Reply:
        token = req.body["filterGroups"][0]["filters"][0]["value"]
        hits = [n for n in notes if token in n["properties"]["hs_note_body"]]  # type: ignore[index]
        return Reply(body={"results": hits})

    server.route("POST", "/crm/v3/objects/notes", create)
    server.route("POST", "/crm/v3/objects/notes/search", search)
    action = {a.name: a for a in hubspot.actions()}["hubspot.add_note"]
    prepared = action.prepare({"object_type": "contacts", "object_id": "7", "body": "Called"})
    assert action.reconcile(prepared) is None
    assert action.execute(prepared).external_id == "n1"
    [sent] = server.matching("POST", "/crm/v3/objects/notes")
    assert sent.body["associations"] == [{"to": {"id": "7"}, "types": [
        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}]  # fmt: skip
    assert f"soloist-{prepared.idempotency_key}" in sent.body["properties"]["hs_note_body"]
    [search_req] = server.matching("POST", "/crm/v3/objects/notes/search")
    assert search_req.body["filterGroups"][0]["filters"][0]["operator"] == "CONTAINS_TOKEN"
    outcome = action.reconcile(prepared)
    assert outcome is not None and outcome.external_id == "n1"


def test_contract_untrusted_tls_certificate_is_a_certificate_error(
    db: Database, clock: FakeClock
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with ContractServer(ssl_context=context) as tls:
        tls.route("GET", "/crm/v3/objects/contacts", Reply(body={"results": []}))
        conn = connector_for(tls.url, db, clock)
        try:
            with pytest.raises(CertificateError):
                conn.client.list_page("contacts", ("email",))
            report = conn.test_connection()
        finally:
            conn.close()
    assert not report.ok and "certificate" in report.summary
    assert tls.requests == []  # nothing was sent in the clear


@NEEDS_DAEMON
def test_contract_real_keyring_token_reaches_header_not_db_or_logs(  # noqa: PLR0917
    secret_service: str,
    server: ContractServer,
    db: Database,
    db_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from keyring.backends.SecretService import Keyring as SecretServiceKeyring

    caplog.set_level(logging.DEBUG)
    secrets = SecretStore(SecretServiceKeyring())
    account = Account("hs1", "hubspot", "Work", {"base_url": server.url})
    secrets.set(account.secret_ref("token"), TOKEN)
    server.route("POST", SEARCH, Reply(body={"results": [contact("1", "a@x.io")]}))
    conn = connector_for(server.url, db, clock, secrets)
    try:
        assert conn.sync_contacts() == 1
    finally:
        conn.close()
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    db.execute("CHECKPOINT")
    stored = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert TOKEN.encode() not in stored
    assert b"a@x.io" in stored or db.fetchone("SELECT count(*) FROM hubspot_contacts") == (1,)
    assert TOKEN not in caplog.text
