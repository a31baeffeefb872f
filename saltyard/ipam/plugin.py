"""Docker's remote IPAM plugin API, answered from the configured pools and the allocations in
Consul. Transport-free: ``IpamPlugin.handle(method, body)`` takes a decoded request and gives
(HTTP status, answer); unix_http.py carries it over the plugin socket.

The methods (Docker's names, each a POST of JSON to ``/<method>``):

- ``Plugin.Activate``: ``{"Implements": ["IpamDriver"]}``.
- ``IpamDriver.GetCapabilities``: ``RequiresRequestReplay``, so that an engine restarting asks
  again for the pools and addresses its networks and endpoints hold (and gets the same answers:
  they are in Consul), and ``RequiresMACAddress``, so that every address request carries the
  endpoint's MAC, the one identity of an endpoint a request has; it is recorded, and it tells
  a replay from a request for an address another endpoint of this host holds.
- ``IpamDriver.GetDefaultAddressSpaces``: names only; the pools are what matter.
- ``IpamDriver.RequestPool``: the pool named by the ipam option ``pool`` (``--ipam-opt
  pool=NAME``) and/or by its subnet (``--subnet``); identical requests get the same PoolID
  (the pool's name). A subnet that does not match the configured pool is refused.
- ``IpamDriver.ReleasePool``: nothing to do (the pool is shared by every host's network).
- ``IpamDriver.RequestAddress``: the gateway (``RequestAddressType=com.docker.network.gateway``)
  is answered without an allocation; a specific address is allocated, or answered again when
  this host already holds it (the replay); otherwise a free address of the pool.
- ``IpamDriver.ReleaseAddress``: deletes this host's allocation.

Every refusal answers ``{"Err": "..."}`` (HTTP 500, as Docker's plugin helpers do) with a
message naming the value; Docker shows it to the user.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from .counters import Counters
from .errors import IpamError, PoolError, PoolFull, StoreUnavailable
from .pools import Pool, parse_address
from .settings import Settings
from .store import AllocationStore

log = logging.getLogger("saltyard.ipam.plugin")

GATEWAY_TYPE = "com.docker.network.gateway"
REQUEST_TYPE_OPTION = "RequestAddressType"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
POOL_OPTION = "pool"
# Answered by Data of RequestPool, so a network created without --gateway gets the pool's.
GATEWAY_DATA = "com.docker.network.gateway"
LOCAL_ADDRESS_SPACE = "saltyard-local"
GLOBAL_ADDRESS_SPACE = "saltyard-global"
STATUS_METHOD = "Saltyard.Status"


class IpamPlugin:
    """The API's methods over ``store`` for the host ``settings.host``. ``status`` gives the
    answer of ``Saltyard.Status`` (the daemon's view); without it the counters alone."""

    def __init__(
        self,
        settings: Settings,
        store: AllocationStore,
        counters: Counters,
        status: Callable[[], dict[str, Any]] | None = None,
    ):
        self.settings = settings
        self.store = store
        self.counters = counters
        self.host = settings.host
        self._status = status or (lambda: {"counters": counters.as_json()})
        self.methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "Plugin.Activate": self.activate,
            "IpamDriver.GetCapabilities": self.get_capabilities,
            "IpamDriver.GetDefaultAddressSpaces": self.get_default_address_spaces,
            "IpamDriver.RequestPool": self.request_pool,
            "IpamDriver.ReleasePool": self.release_pool,
            "IpamDriver.RequestAddress": self.request_address,
            "IpamDriver.ReleaseAddress": self.release_address,
            STATUS_METHOD: lambda _body: self._status(),
        }

    def handle(self, method: str, body: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, answer) for one request; never raises."""
        handler = self.methods.get(method)
        if handler is None:
            return 404, {"Err": f"{self.settings.plugin_name}: no method {method!r}"}
        if not isinstance(body, dict):
            body = {}
        try:
            return 200, handler(body)
        except PoolFull as exc:
            self.counters.inc("pool_full", exc.pool)
            log.warning("%s refused: %s", method, exc)
            return 500, {"Err": str(exc)}
        except StoreUnavailable as exc:
            self.counters.inc("errors", method)
            log.error("%s failed, Consul: %s", method, exc)
            return 500, {"Err": f"{self.settings.plugin_name}: Consul: {exc}"}
        except IpamError as exc:
            self.counters.inc("refusals", method)
            log.warning("%s refused: %s (request %s)", method, exc, body)
            return 500, {"Err": str(exc)}
        except Exception as exc:  # noqa: BLE001 - Docker must get an answer, whatever broke
            self.counters.inc("errors", method)
            log.exception("%s failed (request %s)", method, body)
            return 500, {"Err": f"{self.settings.plugin_name}: internal error: {exc}"}

    # ------------------------------------------------------------------ handshake

    def activate(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {"Implements": ["IpamDriver"]}

    def get_capabilities(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {"RequiresMACAddress": True, "RequiresRequestReplay": True}

    def get_default_address_spaces(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {
            "LocalDefaultAddressSpace": LOCAL_ADDRESS_SPACE,
            "GlobalDefaultAddressSpace": GLOBAL_ADDRESS_SPACE,
        }

    # ------------------------------------------------------------------ pools

    def _configured(self) -> str:
        return ", ".join(f"{p.name} ({p.subnet})" for p in self.settings.pools)

    def _pool(self, pool_id: Any) -> Pool:
        pool = self.settings.pool(str(pool_id or ""))
        if pool is None:
            raise IpamError(
                f"{self.settings.plugin_name}: no pool {pool_id!r} (configured: "
                f"{self._configured()})"
            )
        return pool

    def request_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("V6"):
            raise IpamError(f"{self.settings.plugin_name} serves IPv4 pools only")
        options = body.get("Options") or {}
        name = options.get(POOL_OPTION)
        subnet = None
        if body.get("Pool"):
            try:
                subnet = ipaddress.IPv4Network(str(body["Pool"]), strict=False)
            except ValueError:
                raise IpamError(f"--subnet {body['Pool']!r} is not an IPv4 CIDR") from None
        if name:
            pool = self.settings.pool(name)
            if pool is None:
                raise IpamError(
                    f"--ipam-opt pool={name}: no such pool (configured: {self._configured()})"
                )
            if subnet is not None and subnet != pool.subnet:
                raise IpamError(
                    f"--subnet {subnet} does not match pool {name!r}, whose subnet is {pool.subnet}"
                )
        elif subnet is not None:
            pool = next((p for p in self.settings.pools if p.subnet == subnet), None)
            if pool is None:
                raise IpamError(
                    f"--subnet {subnet} is not the subnet of a configured pool "
                    f"(configured: {self._configured()})"
                )
        else:
            raise IpamError(
                "name a pool with --ipam-opt pool=NAME or --subnet CIDR "
                f"(configured: {self._configured()})"
            )
        sub_pool = body.get("SubPool")
        if sub_pool:
            try:
                wanted = ipaddress.IPv4Network(str(sub_pool), strict=False)
            except ValueError:
                raise IpamError(f"--ip-range {sub_pool!r} is not an IPv4 CIDR") from None
            if str(wanted) != pool.range_text:
                raise IpamError(
                    f"--ip-range {sub_pool}: pool {pool.name!r} hands out its configured range "
                    f"{pool.range_text}; leave --ip-range out"
                )
        log.info("RequestPool: pool %s (%s) for a network on this host", pool.name, pool.subnet)
        return {
            "PoolID": pool.name,
            "Pool": str(pool.subnet),
            "Data": {GATEWAY_DATA: pool.with_prefix(pool.gateway)},
        }

    def release_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        # The pool is shared by every host (and network) using it: its allocations are each
        # released on their own, so nothing is freed here.
        log.info("ReleasePool: pool %s (nothing to free)", body.get("PoolID"))
        return {}

    # ------------------------------------------------------------------ addresses

    def request_address(self, body: dict[str, Any]) -> dict[str, Any]:
        pool = self._pool(body.get("PoolID"))
        options = body.get("Options") or {}
        try:
            address = parse_address(body.get("Address"))
        except PoolError as exc:
            raise IpamError(f"RequestAddress: {exc}") from None
        if options.get(REQUEST_TYPE_OPTION) == GATEWAY_TYPE:
            # The gateway is the router's, shared by every host's network: never allocated.
            if address is not None and address != pool.gateway:
                raise IpamError(
                    f"--gateway {address} is not the gateway {pool.gateway} of pool {pool.name!r}"
                )
            return {"Address": pool.with_prefix(pool.gateway), "Data": {}}
        mac = str(options.get(MAC_OPTION) or "").lower() or None
        if address is not None:
            record, replayed = self.store.allocate_address(pool, address, self.host, mac=mac)
            if replayed:
                self.counters.inc("replays")
                log.info(
                    "RequestAddress %s of pool %s: already this host's (MAC %s), answered again",
                    record.address,
                    pool.name,
                    record.mac,
                )
            else:
                self.counters.inc("allocations")
                log.info(
                    "RequestAddress %s of pool %s: allocated as asked (MAC %s)",
                    record.address,
                    pool.name,
                    mac,
                )
        else:
            record = self.store.allocate(pool, self.host, mac=mac)
            self.counters.inc("allocations")
            log.info(
                "RequestAddress: allocated %s of pool %s (MAC %s)", record.address, pool.name, mac
            )
        return {"Address": pool.with_prefix(record.ip), "Data": {}}

    def release_address(self, body: dict[str, Any]) -> dict[str, Any]:
        pool = self._pool(body.get("PoolID"))
        try:
            address = parse_address(body.get("Address"))
        except PoolError as exc:
            raise IpamError(f"ReleaseAddress: {exc}") from None
        if address is None:
            raise IpamError("ReleaseAddress without an address")
        if address == pool.gateway:
            return {}  # never allocated (see request_address)
        freed = self.store.release(pool.name, address, self.host)
        if freed is None:
            self.counters.inc("releases_unknown")
            log.info(
                "ReleaseAddress %s of pool %s: no allocation (already free)", address, pool.name
            )
        else:
            self.counters.inc("releases")
            log.info(
                "ReleaseAddress %s of pool %s: freed (container %s, allocated %s)",
                address,
                pool.name,
                freed.container_name or freed.container or "unknown",
                freed.time,
            )
        return {}
