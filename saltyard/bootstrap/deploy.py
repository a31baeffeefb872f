"""pyinfra deploy: install Salt from the wheelhouse and join the node to the salt master.

The same deploy bootstraps the local cluster's node containers (@docker/...) and real hosts over
SSH; see saltyard/bootstrap/pyinfra_inventory.py for how hosts and their data are chosen.
Run through `saltyard bootstrap`, which first builds the wheelhouse and the keys.
"""

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from saltyard.bootstrap import REPO_ON_MASTER
from saltyard.bootstrap.wheelhouse import DEPENDENCIES_MARKER, VENV, WHEELHOUSE_KEY

WHEELS = "/opt/saltyard/wheelhouse"
PKI_MINION = "/etc/salt/pki/minion"
PKI_MASTER = "/etc/salt/pki/master"
REPO = REPO_ON_MASTER  # where the master serves this repository from

state_dir = Path(host.data.saltyard_state_dir)
minion_id = host.data.saltyard_minion_id
is_master = host.data.saltyard_is_master

apt.packages(
    name="Python for Salt",
    packages=["python3", "python3-venv", "python3-apt"],
    cache_time=3600,
)

# --- Salt from the wheelhouse -----------------------------------------------------------------
wheelhouse = files.put(
    name="Upload the wheelhouse",
    src=str(state_dir / "wheelhouse.tar"),
    dest=f"{WHEELS}.tar",
)
server.shell(
    name="Install Salt and saltyard into the venv",
    commands=[
        # --system-site-packages: Salt's apt modules use Debian's python3-apt. The local
        # cluster's images carry this venv with Salt installed; a bare host gets it here.
        f"test -x {VENV}/bin/python || python3 -m venv --system-site-packages {VENV}",
        # Reinstall only when the wheelhouse changed (the marker holds its checksum), and
        # Salt with the dependencies only when their key differs from the installed one (an
        # image carries them: then only the saltyard wheel goes in).
        f"if ! cmp -s {WHEELS}.tar {WHEELS}.installed; then "
        f"rm -rf {WHEELS} && mkdir -p {WHEELS} && tar -C {WHEELS} -xf {WHEELS}.tar && "
        f"{{ cmp -s {WHEELS}/{WHEELHOUSE_KEY} {DEPENDENCIES_MARKER} || {{ "
        f"{VENV}/bin/pip install -q --no-index --find-links {WHEELS}/wheels salt saltyard && "
        f"cp {WHEELS}/{WHEELHOUSE_KEY} {DEPENDENCIES_MARKER}; }}; }} && "
        f"{VENV}/bin/pip install -q --no-index --find-links {WHEELS}/wheels --no-deps "
        f"--force-reinstall saltyard && cp {WHEELS}.tar {WHEELS}.installed; fi",
        f"ln -sf {VENV}/bin/salt-call /usr/local/bin/salt-call",
    ],
)

# --- minion -----------------------------------------------------------------------------------
files.directory(name="Minion key folder", path=PKI_MINION, mode="700")
minion_key = files.put(
    name="Minion private key (pre-seeded)",
    src=str(state_dir / "pki" / "minions" / f"{minion_id}.pem"),
    dest=f"{PKI_MINION}/minion.pem",
    mode="400",
)
files.put(
    name="Minion public key",
    src=str(state_dir / "pki" / "minions" / f"{minion_id}.pub"),
    dest=f"{PKI_MINION}/minion.pub",
    mode="644",
)
master_pub = files.put(
    name="The master's public key: the minion trusts exactly this master",
    src=str(state_dir / "pki" / "master" / "master.pub"),
    dest=f"{PKI_MINION}/minion_master.pub",
    mode="644",
)
minion_conf = files.put(
    name="Minion configuration",
    src=StringIO(
        "# Written by the saltyard bootstrap (saltyard/bootstrap/deploy.py).\n"
        f"id: {minion_id}\n"
        f"master: {host.data.saltyard_master_address}\n"
        "# Roles come from the master's pillar (keyed by this minion's authenticated id),\n"
        "# never from grains set here.\n"
        "grains: {}\n"
        "# Custom modules (_modules, _states, ...) are synced when they change: `saltyard\n"
        "# cluster up` and `saltyard cluster highstate` do it, on real hosts run\n"
        "# `salt '*' saltutil.sync_all`. Not by every highstate: that sync took most of an\n"
        "# idempotent highstate (8 of 9 s on a container, docs/benchmarks.md).\n"
        "autoload_dynamic_modules: False\n"
    ),
    dest="/etc/salt/minion.d/saltyard.conf",
)
minion_unit = files.put(
    name="salt-minion systemd unit",
    src=StringIO(
        "[Unit]\n"
        "Description=Salt minion (saltyard)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart={VENV}/bin/salt-minion\n"
        # Only the minion itself is stopped on restart, so a state that restarts the minion
        # does not kill the job doing it.
        "KillMode=process\n"
        "Restart=on-failure\n"
        "RestartSec=3\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    ),
    dest="/etc/systemd/system/salt-minion.service",
)

# --- master -----------------------------------------------------------------------------------
master_changed = []
if is_master:
    files.directory(name="Master key folders", path=f"{PKI_MASTER}/minions", mode="700")
    master_changed.append(
        files.put(
            name="Master private key (pre-seeded)",
            src=str(state_dir / "pki" / "master" / "master.pem"),
            dest=f"{PKI_MASTER}/master.pem",
            mode="400",
        )
    )
    files.put(
        name="Master public key",
        src=str(state_dir / "pki" / "master" / "master.pub"),
        dest=f"{PKI_MASTER}/master.pub",
        mode="644",
    )
    for peer in host.data.saltyard_minion_ids:
        files.put(
            name=f"Accept minion {peer} (its pre-generated public key)",
            src=str(state_dir / "pki" / "minions" / f"{peer}.pub"),
            dest=f"{PKI_MASTER}/minions/{peer}",
            mode="644",
        )
    master_changed.append(
        files.put(
            name="Master configuration",
            src=StringIO(
                "# Written by the saltyard bootstrap (saltyard/bootstrap/deploy.py).\n"
                "interface: 0.0.0.0\n"
                "# Keys are pre-seeded for exactly the inventory's nodes; no other is accepted.\n"
                "auto_accept: False\n"
                "open_mode: False\n"
                f"saltyard_site: {host.data.saltyard_site}\n"
                "# This node's own minion id: pillar/top.sls serves it (and the orchestration's\n"
                "# '<id>_master') the release data.\n"
                f"saltyard_master_id: {host.data.saltyard_minion_id}\n"
                "file_roots:\n"
                "  base:\n"
                f"    - {REPO}/states\n"
                f"    - {REPO}  # _modules/ and _states/, synced to the minions\n"
                "file_ignore_regex:\n"
                "  - '/\\.(git|venv|state|ruff_cache|pytest_cache|vagrant)($|/)'\n"
                "  - '/(tests|docs)($|/)'\n"
                "pillar_roots:\n"
                "  base:\n"
                f"    - {REPO}/pillar\n"
                "# The release workflow's runner (_runners/saltyard_release.py).\n"
                "runner_dirs:\n"
                f"  - {REPO}/_runners\n"
                "# The inventory ext_pillar (_pillar/saltyard_inventory.py) loads from here.\n"
                "pillar_dirs:\n"
                f"  - {REPO}/_pillar\n"
                "ext_pillar:\n"
                f"  - saltyard_inventory: {REPO}/salt/inventory.yaml\n"
                "  - saltyard_secrets:\n"
                f"      catalogue: {REPO}/salt/secrets.yaml\n"
                "      store: /etc/salt/saltyard-secrets\n"
                "  - saltyard_pki:\n"
                "      store: /etc/salt/saltyard-pki\n"
                "# Pillar errors (a bad inventory) stop every state run before any change.\n"
                "pillar_safe_render_error: False\n"
                "# How long a minion may take to answer 'are you still running that job?' before\n"
                "# the master reports it as not responding. The default, 10 s, is too short for a\n"
                "# busy or emulated node (QEMU without KVM): a highstate or an orchestration step\n"
                "# still running there was reported 'No minions responded'.\n"
                "gather_job_timeout: 60\n"
            ),
            dest="/etc/salt/master.d/saltyard.conf",
        )
    )
    master_changed.append(
        files.put(
            name="salt-master systemd unit",
            src=StringIO(
                "[Unit]\n"
                "Description=Salt master (saltyard)\n"
                "After=network-online.target\n\n"
                "[Service]\n"
                f"ExecStart={VENV}/bin/salt-master\n"
                "LimitNOFILE=100000\n"
                "Restart=on-failure\n\n"
                "[Install]\n"
                "WantedBy=multi-user.target\n"
            ),
            dest="/etc/systemd/system/salt-master.service",
        )
    )
    for tool in ("salt", "salt-key", "salt-run"):
        files.link(
            name=f"{tool} on PATH", path=f"/usr/local/bin/{tool}", target=f"{VENV}/bin/{tool}"
        )
    # Restart first (pyinfra restarts only a service that is already running), then start:
    # never a start followed seconds later by a restart (see the minion below).
    systemd.service(
        name="Restart salt-master after a change",
        service="salt-master",
        restarted=True,
        daemon_reload=True,
        _if=any_changed(*master_changed, wheelhouse),
    )
    systemd.service(
        name="salt-master running",
        service="salt-master",
        running=True,
        enabled=True,
        daemon_reload=True,
    )

# Restart first, then start. A minion that already ran is restarted when its key,
# configuration, unit or wheels changed (pyinfra restarts only a running service); a new one is
# only started. Starting and then restarting it seconds later, as this did before, sent SIGTERM
# to a minion still starting up: with KillMode=process its process manager child outlived it
# and kept the minion's sockets, and every new minion exited at once, in a restart loop.
systemd.service(
    name="Restart salt-minion after a change",
    service="salt-minion",
    restarted=True,
    daemon_reload=True,
    _if=any_changed(minion_key, master_pub, minion_conf, minion_unit, wheelhouse),
)
systemd.service(
    name="salt-minion running",
    service="salt-minion",
    running=True,
    enabled=True,
    daemon_reload=True,
)
