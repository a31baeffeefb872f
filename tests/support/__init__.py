"""What every host-level suite and benchmark shares, one copy each (import as ``tests.support``):

- ``components``: ``require`` and its probes: a missing real component (Docker engine, Consul,
  nginx, consul-template, QEMU, /dev/net/tun, root, a loop mount) skips locally and fails the
  run under ``CI=true``;
- ``wait``: ``wait_until``, ``free_port``, ``tail``;
- ``consul``: the one Consul launcher (a dev agent or a one-server datacenter, ACLs on);
- ``docker``: the Docker client, the task image, user-defined test networks and the
  session's cleanup of containers and networks;
- ``emulator``: the Marathon-API emulator as a subprocess;
- ``bridge``: the bridge as a subprocess, and the test app definition it serves;
- ``versions``: pinned versions of outside tools (consul-template);
- ``tinyweb``: a 6 MB task image of one static Go server (``tinyweb.image(engine)``), for the
  agent VM, where the Debian task image takes minutes to unpack.

``fixtures`` makes pytest fixtures of them; tests/conftest.py loads it for every suite.
"""
