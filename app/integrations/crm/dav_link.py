"""The link from the CRM to one address book of a contacts (DAV) account.

A CRM account may name, in its settings, a DAV account (``dav_account``:
its id in ``connector_accounts``) and one of its address books
(``address_book``: the collection's URL). Both are optional: without
``dav_account`` the CRM syncs with nothing; without ``address_book`` the
DAV account's only address book is used (discovery finds it; with several,
the owner must choose).

The DAV account's password goes only where that account's server is: an
``address_book`` on another host (or port, or scheme) than the account's
URL is accepted only if discovery on the account lists it, since some
providers keep contacts on a host of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.integrations.accounts import AccountStore
from app.integrations.base import Account
from app.integrations.dav import AddressBookClient, dav_http_client, discover
from app.integrations.errors import ConnectorAuthError, ConnectorConfigError
from app.secrets import SecretNotFoundError

if TYPE_CHECKING:
    import httpx

    from app.integrations.base import ConnectorContext
    from app.integrations.http import HttpClient

__all__ = ["DavLink", "LinkedBook", "dav_link", "open_linked_book"]


@dataclass(frozen=True, slots=True)
class DavLink:
    """What a CRM account's settings say: a DAV account, maybe one of its books."""

    dav_account: str
    address_book: str | None = None


@dataclass(frozen=True, slots=True)
class LinkedBook:
    """An open address book; ``close()`` releases its HTTP connections."""

    client: AddressBookClient
    url: str
    http: HttpClient

    @property
    def book_id(self) -> str:
        """The key of the sync state: the URL, with the trailing slash either way of writing it."""
        return self.url.rstrip("/") + "/"

    def close(self) -> None:
        self.http.close()


def dav_link(crm_account: Account) -> DavLink | None:
    """The link in ``crm_account``'s settings; None when it names no DAV account."""
    dav_id = _text_setting(crm_account, "dav_account")
    book = _text_setting(crm_account, "address_book")
    if dav_id is None:
        if book is not None:
            raise ConnectorConfigError(
                f"{crm_account.name}: an address book is set but no contacts account "
                "(dav_account); choose the account it belongs to"
            )
        return None
    if book is not None and urlsplit(book).scheme not in ("http", "https"):
        raise ConnectorConfigError(f"{crm_account.name}: the address book is not an http(s) URL")
    return DavLink(dav_id, book)


def open_linked_book(
    link: DavLink,
    context: ConnectorContext,
    *,
    transport: httpx.BaseTransport | None = None,
) -> LinkedBook:
    """An ``AddressBookClient`` on the linked book, logged in as the DAV account."""
    accounts = AccountStore(context.db, context.secrets)
    dav = _dav_account(accounts, link.dav_account)
    server = _required(dav, "url")
    http = dav_http_client(
        server,
        _required(dav, "username"),
        _password(dav, context),
        _text_setting(dav, "ca_file"),
        transport=transport,
    )
    try:
        url = _book_url(http, dav, server, link.address_book)
    except BaseException:
        http.close()
        raise
    use_sync = dav.setting("use_sync_collection", True) is not False
    return LinkedBook(AddressBookClient(http, url, use_sync_collection=use_sync), url, http)


def _dav_account(accounts: AccountStore, account_id: str) -> Account:
    dav = accounts.find(account_id)
    if dav is None:
        raise ConnectorConfigError(
            f"the CRM is linked to the contacts account {account_id!r}, which no longer "
            "exists; link another one or remove the link"
        )
    if dav.kind != "dav":
        raise ConnectorConfigError(
            f"the CRM is linked to {dav.name}, a {dav.kind} account; "
            "only a contacts (CardDAV) account has address books"
        )
    if not accounts.is_enabled(dav.id):
        raise ConnectorConfigError(f"{dav.name} is turned off; turn it on to sync the CRM")
    return dav


def _book_url(http: HttpClient, dav: Account, server: str, wanted: str | None) -> str:
    if wanted is not None and _origin(wanted) == _origin(server):
        return wanted
    books = discover(http, server).address_books
    if wanted is not None:
        for book in books:
            if _same_collection(book.url, wanted):
                return book.url
        raise ConnectorConfigError(
            f"the linked address book is not one of {dav.name}'s address books; "
            "nothing was sent there"
        )
    if len(books) != 1:
        found = "no address book" if not books else f"{len(books)} address books"
        raise ConnectorConfigError(
            f"{dav.name} has {found}; name the one to sync in the CRM's address_book setting"
        )
    return books[0].url


def _password(dav: Account, context: ConnectorContext) -> str:
    try:
        return context.secrets.get(dav.secret_ref("password"))
    except SecretNotFoundError as exc:
        raise ConnectorAuthError(
            f"no password is stored for {dav.name}; enter it again in Connections"
        ) from exc


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _same_collection(a: str, b: str) -> bool:
    """Equal origins and paths; a trailing slash does not matter."""
    path_a, path_b = urlsplit(a).path.rstrip("/"), urlsplit(b).path.rstrip("/")
    return _origin(a) == _origin(b) and path_a == path_b


def _text_setting(account: Account, key: str) -> str | None:
    value = account.setting(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConnectorConfigError(f"{account.name}: the {key} setting is not text")
    return value.strip()


def _required(account: Account, key: str) -> str:
    value = _text_setting(account, key)
    if value is None:
        raise ConnectorConfigError(f"{account.name}: the {key} setting is missing")
    return value
