"""HubSpot's CRM REST API, as a few typed calls on top of :class:`HttpClient`.

Follows the HubSpot developer documentation as published in 2025:

- CRM API v3 objects (``/crm/v3/objects/{type}``: list with an ``after``
  cursor, get, create, ``PATCH`` update, ``POST .../search`` with
  ``filterGroups``), CRM pipelines v3 (``/crm/v3/pipelines/deals``) and
  Associations v4 (``PUT /crm/v4/objects/.../associations/default/...``).
- "API usage guidelines and limits": a private app may send 100 requests per
  10 s (190 on Professional / Enterprise), the search endpoints 5 requests
  per second per account; responses carry ``X-HubSpot-RateLimit-Max``,
  ``-Remaining`` and ``-Interval-Milliseconds`` (not the search endpoints),
  which correct our bucket; a 429 carries ``Retry-After`` (HttpClient waits).
- Error bodies (``status``, ``message``, ``correlationId``, ``category``):
  only the category and correlation id reach our one-line messages; HubSpot's
  ``message`` often quotes property values (customer data), so it is dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from app.integrations.base import JsonObject
from app.integrations.errors import (
    ConnectorAuthError,
    ConnectorError,
    MalformedDataError,
    RemoteConflictError,
    RemoteNotFoundError,
    RemoteRejectedError,
)
from app.integrations.http import HttpClient
from app.integrations.ratelimit import Backoff, Clock, Sleep, TokenBucket

log = logging.getLogger("soloist.integrations.hubspot")

DEFAULT_BASE_URL = "https://api.hubapi.com"
DEFAULT_PER_10S = 100  # private app, Free / Starter; 190 on Professional / Enterprise
SEARCH_PER_S = 5  # CRM search endpoints, per account
SEARCH_MAX_RESULTS = 10_000  # a search cannot page past this many results
# 4xx answers come back to us (HttpClient still retries 429) so the body can be read.
_CLIENT_ERRORS = frozenset(range(400, 500)) - {429}
# Association type ids of a note (HUBSPOT_DEFINED), from the Associations v4 docs.
NOTE_ASSOCIATION_TYPES = {"contacts": 202, "companies": 190, "deals": 214}


class HubSpotClient:
    """One private-app token, a request bucket and a search bucket."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        per_10s: int = DEFAULT_PER_10S,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        backoff: Backoff | None = None,
        verify: Any = True,
    ) -> None:
        self.bucket = TokenBucket(per_10s, per_10s / 10, clock=clock, sleep=sleep)
        self.search_bucket = TokenBucket(SEARCH_PER_S, SEARCH_PER_S, clock=clock, sleep=sleep)
        self._http = HttpClient(
            base_url,
            service="HubSpot",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            bucket=self.bucket,
            backoff=backoff,
            transport=transport,
            sleep=sleep,
            verify=verify,
        )

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return "HubSpotClient(<token hidden>)"

    # -- transport ------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        json: JsonObject | None = None,
        params: Mapping[str, str | int] | None = None,
        search: bool = False,
    ) -> JsonObject:
        """Send one request; the JSON object answered, or a mapped error."""
        if search:
            self.search_bucket.take()
        response = self._http.request(
            method, path, json=json, params=params, ok_statuses=_CLIENT_ERRORS
        )
        self._adjust_bucket(response.headers)
        if not response.is_success:
            raise hubspot_error(response)
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise MalformedDataError("HubSpot answered with something that is not JSON") from exc
        if not isinstance(body, dict):
            raise MalformedDataError("HubSpot answered with JSON that is not an object")
        return body

    def _adjust_bucket(self, headers: httpx.Headers) -> None:
        """Trust HubSpot's own count of the requests left in this interval."""
        limit = _int_header(headers, "X-HubSpot-RateLimit-Max")
        interval_ms = _int_header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
        remaining = _int_header(headers, "X-HubSpot-RateLimit-Remaining")
        if limit and interval_ms and limit != self.bucket.capacity:
            log.info("HubSpot: rate limit is %d per %d ms", limit, interval_ms)
            self.bucket.capacity = float(limit)
            self.bucket.rate_per_s = limit / (interval_ms / 1000)
        if remaining is not None and remaining < self.bucket.available:
            self.bucket.set_available(remaining)

    # -- CRM objects ------------------------------------------------------
    def list_page(
        self,
        object_type: str,
        properties: Sequence[str],
        after: str | None = None,
        limit: int = 100,
    ) -> JsonObject:
        params: dict[str, str | int] = {"limit": limit, "properties": ",".join(properties)}
        if after:
            params["after"] = after
        return self.call("GET", f"/crm/v3/objects/{object_type}", params=params)

    def search(
        self,
        object_type: str,
        *,
        filters: Sequence[JsonObject] = (),
        properties: Sequence[str] = (),
        query: str | None = None,
        sorts: Sequence[JsonObject] = (),
        after: str | None = None,
        limit: int = 100,
    ) -> JsonObject:
        """One page of ``POST /crm/v3/objects/{type}/search`` (filters are ANDed)."""
        body: JsonObject = {"limit": limit, "properties": list(properties)}
        if filters:
            body["filterGroups"] = [{"filters": list(filters)}]
        if query:
            body["query"] = query
        if sorts:
            body["sorts"] = list(sorts)
        if after:
            body["after"] = after
        return self.call("POST", f"/crm/v3/objects/{object_type}/search", json=body, search=True)

    def search_all(self, object_type: str, **kwargs: Any) -> Iterator[JsonObject]:
        """Every result of a search, page after page (up to HubSpot's 10,000)."""
        after: str | None = None
        while True:
            page = self.search(object_type, after=after, **kwargs)
            yield from results_of(page)
            after = next_after(page)
            if after is None:
                return

    def get(
        self,
        object_type: str,
        object_id: str,
        properties: Sequence[str],
        *,
        id_property: str | None = None,
    ) -> JsonObject:
        params: dict[str, str | int] = {"properties": ",".join(properties)}
        if id_property:
            params["idProperty"] = id_property
        return self.call("GET", f"/crm/v3/objects/{object_type}/{object_id}", params=params)

    def create(
        self, object_type: str, properties: JsonObject, associations: Sequence[JsonObject] = ()
    ) -> JsonObject:
        body: JsonObject = {"properties": properties}
        if associations:
            body["associations"] = list(associations)
        return self.call("POST", f"/crm/v3/objects/{object_type}", json=body)

    def update(self, object_type: str, object_id: str, properties: JsonObject) -> JsonObject:
        path = f"/crm/v3/objects/{object_type}/{object_id}"
        return self.call("PATCH", path, json={"properties": properties})

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> JsonObject:
        """The default association between two records (Associations v4)."""
        path = f"/crm/v4/objects/{from_type}/{from_id}/associations/default/{to_type}/{to_id}"
        return self.call("PUT", path)

    def pipelines(self, object_type: str = "deals") -> list[JsonObject]:
        return results_of(self.call("GET", f"/crm/v3/pipelines/{object_type}"))


def results_of(page: JsonObject) -> list[JsonObject]:
    results = page.get("results", [])
    if not isinstance(results, list):
        raise MalformedDataError("HubSpot answered a page without a results list")
    return [item for item in results if isinstance(item, dict)]


def next_after(page: JsonObject) -> str | None:
    paging = page.get("paging")
    nxt = paging.get("next") if isinstance(paging, dict) else None
    after = nxt.get("after") if isinstance(nxt, dict) else None
    return str(after) if after not in (None, "") else None


def properties_of(record: JsonObject) -> dict[str, Any]:
    props = record.get("properties")
    return dict(props) if isinstance(props, dict) else {}


def hubspot_error(response: httpx.Response) -> ConnectorError:
    """A one-line error from HubSpot's error body: status, category, correlation id only."""
    status = response.status_code
    category, correlation = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        category = str(body.get("category") or "")
        correlation = str(body.get("correlationId") or "")
    where = f"HubSpot answered HTTP {status}" + (f" ({category})" if category else "")
    ref = f" [correlation id {correlation}]" if correlation else ""
    log.warning("HubSpot error %d %s correlation=%s", status, category, correlation)
    if status in (401, 403):
        return ConnectorAuthError(
            f"{where}: the token was refused or lacks a scope; check it in Connections{ref}"
        )
    if status in (404, 410):
        return RemoteNotFoundError(f"{where}: not found{ref}")
    if status == 409:
        return RemoteConflictError(f"{where}: it already exists or changed on HubSpot{ref}")
    return RemoteRejectedError(f"{where}: the request was refused{ref}")


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
