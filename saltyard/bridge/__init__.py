"""The Marathon-to-Consul bridge: healthy Marathon tasks become Consul service instances.

Run it as ``python -m saltyard.bridge --marathon URL --consul URL --listen HOST:PORT``; see
docs/bridge.md for behaviour, settings, the ACL policy and apps without health checks.

- registrations.py: what an app's tasks should look like in Consul (pure, no I/O);
- consul_store.py: reading what the bridge owns, the lock session, fenced writes;
- leader.py: the Consul lock that keeps exactly one bridge active;
- daemon.py: event stream, periodic full resync, the single writer;
- ipam.py: with --ipam-reconcile, frees IPAM allocations whose Marathon task is gone;
- status.py and metrics.py: /health and /metrics; settings.py: flags and environment.
"""

from .daemon import Bridge
from .settings import Settings, SettingsError

__all__ = ["Bridge", "Settings", "SettingsError"]
