"""What the window shows, kept current: resources, the inbox, approval items, connections.

`AppState` is the one place where the UI meets the services (Account, LiveEvents,
ProxyController): widgets call its coroutines through `Tasks` and listen to its signals. Live
events drive everything that changes on its own — a request decided, a new item for a
reviewer, a held statement approved — so no screen has a refresh button. After a (re)connect of
the event stream the state is read again, since events may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError
from PySide6.QtCore import QObject, QTimer, Signal

from app.services.account import Account
from app.services.proxies import Connection, ProxyController
from localproxy.contract import (
    AccessRequestView,
    ApprovalItem,
    CommandReviewView,
    Event,
    Me,
    ResourceView,
)

log = logging.getLogger(__name__)

Item = AccessRequestView | CommandReviewView
_ITEM: TypeAdapter[Item] = TypeAdapter(ApprovalItem)
DECIDED = ("approved", "denied", "expired", "cancelled", "consumed")


class LiveSource(Protocol):
    """What AppState needs of `app.services.live.LiveEvents`."""

    connected: bool

    def start(self) -> None: ...

    async def aclose(self) -> None: ...


LiveFactory = Callable[[Account, Callable[[Event], None], Callable[[], None]], LiveSource]


def _default_live(
    account: Account, on_event: Callable[[Event], None], on_connected: Callable[[], None]
) -> LiveSource:
    from app.services.live import LiveEvents

    return LiveEvents(account, on_event, on_connected=on_connected)


def item_of(event: Event) -> Item | None:
    """The approval item an event is about (request.* and review.* carry the whole view)."""
    if not event.type.startswith(("request.", "review.")):
        return None
    try:
        return _ITEM.validate_python(event.data)
    except ValidationError:
        log.warning("event %s carries no approval item", event.type)
        return None


def describe_item(item: Item) -> str:
    if isinstance(item, AccessRequestView):
        return f"access to {item.resource}"
    first = item.statement.strip().splitlines()[0] if item.statement.strip() else ""
    return f"“{first[:60]}” on {item.resource}"


class AppState(QObject):
    """The signed-in user's view of central, kept live."""

    resources_changed = Signal(list)  # list[ResourceView]
    inbox_changed = Signal(list)  # list[Item], pending items this user may decide
    item_changed = Signal(object)  # Item: any approval item we learnt something new about
    connections_changed = Signal()
    live_changed = Signal(bool)
    notice = Signal(str, str, str)  # title, message, level

    def __init__(
        self,
        account: Account,
        controller: ProxyController,
        *,
        live_factory: LiveFactory = _default_live,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.account = account
        self.controller = controller
        self.resources: list[ResourceView] = []
        self.inbox: list[Item] = []
        self.items: dict[str, Item] = {}
        self.events_seen = 0
        self._live_factory = live_factory
        self._live: LiveSource | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self._dirty = {"resources": False, "inbox": False}
        # Bursts of events (a reviewer approving several items) cause one re-read, not many.
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(50)
        self._debounce.timeout.connect(self._reread)
        self._watch(controller)

    def _watch(self, controller: ProxyController) -> None:
        # A local proxy that dies on its own shows at once.
        controller.on_change(self._controller_changed)

    def _controller_changed(self) -> None:
        self.connections_changed.emit()

    @property
    def me(self) -> Me | None:
        return self.account.me

    @property
    def user(self) -> str:
        me = self.me
        return me.user if me else ""

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the event stream, then read resources and inbox once."""
        if self._live is None:
            self._live = self._live_factory(self.account, self._on_event, self._on_connected)
            self._live.start()
        await asyncio.gather(self.refresh_resources(), self.refresh_inbox())

    def detach(self) -> LiveSource | None:
        """Let go of the event stream (the caller closes it); for switching centrals."""
        live, self._live = self._live, None
        return live

    def rebind(self, account: Account, controller: ProxyController) -> None:
        """Serve another account (another central): everything known is forgotten."""
        self.account, self.controller = account, controller
        self._watch(controller)
        self.resources, self.inbox, self.items = [], [], {}
        self.resources_changed.emit(self.resources)
        self.inbox_changed.emit(self.inbox)

    async def aclose(self) -> None:
        self._debounce.stop()
        live, self._live = self._live, None
        if live is not None:
            await live.aclose()
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refreshing

    # -- reading --------------------------------------------------------------------------------

    async def refresh_resources(self) -> list[ResourceView]:
        async with self.account.client() as api:
            self.resources = await api.resources()
        self.resources_changed.emit(self.resources)
        return self.resources

    async def refresh_inbox(self) -> list[Item]:
        async with self.account.client() as api:
            self.inbox = list(await api.approvals())
        for item in self.inbox:
            self.items[item.id] = item
        self.inbox_changed.emit(self.inbox)
        return self.inbox

    def resource(self, name: str) -> ResourceView | None:
        return next((r for r in self.resources if r.name == name), None)

    # -- acting ---------------------------------------------------------------------------------

    async def request_access(
        self, resource: str, reason: str, duration: int | str | None
    ) -> AccessRequestView:
        async with self.account.client() as api:
            item = await api.request_access(resource, reason, duration)
        self._learn(item)
        self._schedule("resources")  # the resource is now "pending"
        return item

    async def decide(self, item_id: str, approve: bool, comment: str) -> Item:
        async with self.account.client() as api:
            if approve:
                item = await api.approve(item_id, comment or None)
            else:
                item = await api.deny(item_id, comment)
        self._learn(item)
        self._schedule("inbox")
        return item

    async def item(self, item_id: str) -> Item:
        """One item read fresh (a held statement's review, named in a notice)."""
        async with self.account.client() as api:
            item = await api.approval(item_id)
        self._learn(item)
        return item

    async def open_proxy(self, resource: ResourceView) -> Connection:
        try:
            return await self.controller.connect(resource)
        finally:
            self.connections_changed.emit()

    async def close_proxy(self, name: str) -> None:
        try:
            await self.controller.disconnect(name)
        finally:
            self.connections_changed.emit()

    def connection(self, name: str) -> Connection | None:
        return self.controller.connections.get(name)

    # -- live events ----------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the event stream is open right now."""
        return self._live is not None and self._live.connected

    def _on_connected(self) -> None:
        """The stream (re)opened: events may have been missed meanwhile, so read again."""
        self.live_changed.emit(True)
        self._schedule("resources", "inbox")

    def _on_event(self, event: Event) -> None:
        """Called by LiveEvents on the loop (the GUI thread under qasync)."""
        self.events_seen += 1
        item = item_of(event)
        if item is None:
            return
        self._learn(item)
        mine = item.requester == self.user
        action = event.type.split(".", 1)[1]
        if mine:
            if isinstance(item, AccessRequestView):
                self._schedule("resources")
            if action in ("approved", "denied", "expired"):
                self._notify_mine(item, action)
        else:
            self._schedule("inbox")
            if action == "created":
                self.notice.emit(
                    "New item to review",
                    f"{item.requester} asks for {describe_item(item)}",
                    "info",
                )

    def _learn(self, item: Item) -> None:
        known = self.items.get(item.id)
        self.items[item.id] = item
        if known != item:
            self.item_changed.emit(item)

    def _notify_mine(self, item: Item, action: str) -> None:
        what = describe_item(item)
        if action == "approved":
            by = f" by {item.decided_by}" if item.decided_by else ""
            extra = ""
            if isinstance(item, AccessRequestView) and item.expires_at is not None:
                extra = f", until {item.expires_at.astimezone():%H:%M}"
            self.notice.emit(
                "Request approved", f"Your request for {what} was approved{by}{extra}", "ok"
            )
        elif action == "denied":
            why = f": {item.comment}" if item.comment else ""
            self.notice.emit(
                "Request denied", f"Your request for {what} was denied{why}", "warning"
            )
        else:
            self.notice.emit("Request expired", f"Your request for {what} expired", "warning")

    def _schedule(self, *what: str) -> None:
        for w in what:
            self._dirty[w] = True
        self._debounce.start()

    def _reread(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._debounce.start()  # one re-read at a time; try again shortly
            return
        self._refreshing = asyncio.ensure_future(self._reread_now())

    async def _reread_now(self) -> None:
        jobs: list[Coroutine[Any, Any, object]] = []
        if self._dirty["resources"]:
            self._dirty["resources"] = False
            jobs.append(self.refresh_resources())
        if self._dirty["inbox"]:
            self._dirty["inbox"] = False
            jobs.append(self.refresh_inbox())
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("re-reading after an event failed: %s", result)
                self.notice.emit("Could not refresh", str(result), "warning")
