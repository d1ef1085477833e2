"""Address book reads, writes and collection sync against a real Radicale server.

Each sync test runs twice: with RFC 6578 sync-collection and with the
ctag/etag fallback, which must give the same answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dav_server import DavServer, radicale  # noqa: F401  (fixture)

from app.integrations.dav import AddressBookClient, dav_http_client
from app.integrations.dav.carddav import vcard_uid, vcard_values
from app.integrations.dav.sync import FALLBACK_PREFIX, EtagState
from app.integrations.dav.webdav import path_key
from app.integrations.errors import RemoteConflictError, RemoteNotFoundError
from app.integrations.http import HttpClient


def card(uid: str, name: str, email: str | None = None) -> str:
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"UID:{uid}", f"FN:{name}", f"N:{name};;;;"]
    if email:
        lines.append(f"EMAIL;TYPE=work:{email}")
    return "\r\n".join([*lines, "END:VCARD", ""])


@pytest.fixture
def http(radicale: DavServer) -> Iterator[HttpClient]:  # noqa: F811
    client = dav_http_client(radicale.url, radicale.user, radicale.password)
    yield client
    client.close()


@pytest.fixture(params=[True, False], ids=["sync-collection", "ctag-etag"])
def book(
    request: pytest.FixtureRequest,
    radicale: DavServer,  # noqa: F811
    http: HttpClient,
) -> AddressBookClient:
    return AddressBookClient(http, radicale.book_url, use_sync_collection=request.param)


def keys(hrefs: object) -> set[str]:
    assert isinstance(hrefs, tuple | list)
    return {path_key(h) for h in hrefs}


def test_put_get_delete_a_card(book: AddressBookClient) -> None:
    created = book.put(None, card("ana-1", "Ana Lima", "ana@example.pt"))
    assert created.href.endswith("/book/ana-1.vcf") and created.etag
    fetched = book.get(created.href)
    assert fetched.etag == created.etag
    assert vcard_values(fetched.data, "EMAIL") == ["ana@example.pt"]
    with pytest.raises(RemoteConflictError):  # If-None-Match: * on an existing name
        book.put(None, card("ana-1", "Ana Again"))
    changed = book.put(created.href, card("ana-1", "Ana M. Lima"), etag=created.etag)
    assert changed.etag != created.etag
    with pytest.raises(RemoteConflictError):  # the old etag is stale now
        book.put(created.href, card("ana-1", "Lost update"), etag=created.etag)
    book.delete(changed.href, etag=changed.etag)
    with pytest.raises(RemoteNotFoundError):
        book.get(changed.href)


def test_a_card_without_uid_gets_one(book: AddressBookClient) -> None:
    data = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No Uid\r\nEND:VCARD\r\n"
    created = book.put(None, data)
    uid = vcard_uid(book.get(created.href).data)
    assert uid is not None and created.href.endswith(f"{uid}.vcf")


def test_sync_returns_exactly_the_changes(book: AddressBookClient) -> None:
    a = book.put(None, card("a", "Alice"))
    b = book.put(None, card("b", "Bruno"))
    c = book.put(None, card("c", "Carla"))
    first = book.sync(None)
    assert first.full and first.token and first.deleted == ()
    assert keys([o.href for o in first.changed]) == keys([a.href, b.href, c.href])
    assert {vcard_uid(o.data) for o in first.changed} == {"a", "b", "c"}

    book.put(a.href, card("a", "Alice Changed"), etag=a.etag)
    book.delete(b.href)
    d = book.put(None, card("d", "Diogo"))
    second = book.sync(first.token)
    assert not second.full
    assert keys([o.href for o in second.changed]) == keys([a.href, d.href])
    assert keys(second.deleted) == keys([b.href])
    changed_a = next(o for o in second.changed if vcard_uid(o.data) == "a")
    assert vcard_values(changed_a.data, "FN") == ["Alice Changed"] and changed_a.etag

    third = book.sync(second.token)
    assert (third.changed, third.deleted, third.full) == ((), (), False)


def test_a_refused_token_means_a_full_resync(book: AddressBookClient) -> None:
    a = book.put(None, card("a", "Alice"))
    bogus = (
        "http://radicale.org/ns/sync/" + "0" * 64
        if book._sync.use_sync_collection
        else FALLBACK_PREFIX + "not-base64-zlib!"
    )
    result = book.sync(bogus)
    assert result.full and result.token and result.token != bogus
    assert keys([o.href for o in result.changed]) == keys([a.href])


def test_fallback_token_carries_ctag_and_etags(radicale: DavServer, http: HttpClient) -> None:  # noqa: F811
    book = AddressBookClient(http, radicale.book_url, use_sync_collection=False)
    a = book.put(None, card("a", "Alice"))
    result = book.sync(None)
    assert result.token is not None and result.token.startswith(FALLBACK_PREFIX)
    state = EtagState.decode(result.token)
    assert state is not None and state.ctag
    assert {path_key(h): e for h, e in state.etags.items()} == {path_key(a.href): a.etag}
    assert EtagState.decode("soloist-etags:1:AAAA") is None
    assert EtagState.decode("http://server/token") is None
