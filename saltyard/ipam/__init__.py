"""saltyard.ipam: a Docker remote IPAM plugin that hands out container addresses from configured
pools and keeps every allocation in Consul KV (docs/ipam.md).

- pools.py: the pool definitions and their validation (pure; the Salt render checks reuse it);
- store.py: allocations in Consul (check-and-set), and ``list_allocations`` for the record;
- plugin.py: Docker's IPAM plugin API; unix_http.py: HTTP over the plugin's unix socket;
- reconcile.py: frees allocations whose container is gone, records the ones it finds;
- settings.py: the configuration file; daemon.py and __main__.py: ``python -m saltyard.ipam``.

What the Salt side calls: ``parse_pools`` / ``parse_pool`` / ``pool_overlapping`` (render
checks), ``parse_settings`` (the config file a state writes), ``list_allocations`` (the record)
and ``plugin_status`` (a running plugin's counters).
"""

from .errors import AddressTaken, IpamError, PoolError, PoolFull, StoreUnavailable
from .pools import Pool, parse_pool, parse_pools, pool_overlapping
from .settings import Settings, SettingsError, load_settings, parse_settings
from .store import DEFAULT_PREFIX, Allocation, AllocationStore, list_allocations
from .unix_http import call_plugin, plugin_status

__all__ = [
    "DEFAULT_PREFIX",
    "AddressTaken",
    "Allocation",
    "AllocationStore",
    "IpamError",
    "Pool",
    "PoolError",
    "PoolFull",
    "Settings",
    "SettingsError",
    "StoreUnavailable",
    "call_plugin",
    "list_allocations",
    "load_settings",
    "parse_pool",
    "parse_pools",
    "parse_settings",
    "plugin_status",
    "pool_overlapping",
]
