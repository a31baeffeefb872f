"""ext_pillar: TLS material from the cluster CAs on the master (saltyard/pki.py).

Every node gets the cluster CA certificate and its own certificate and key (names: node name,
FQDN under the cluster domain, address, plus pillar `pki:extra_names`, plus on registry nodes the
registry VIP `registry:vip:address`). Nodes with the docker role
also get the CA that Docker API clients must be signed by; nodes with a role in
`DOCKER_CLIENT_ROLES` get a client certificate from it. CA keys never leave the master; a node sees
only its own key. Must come after the saltyard_inventory ext_pillar, whose node and roles it reads.

Master configuration:

    ext_pillar:
      - saltyard_inventory: /srv/saltyard/salt/inventory.yaml
      - saltyard_pki:
          store: /etc/salt/saltyard-pki
"""

try:
    from saltyard import inventory, pki

    HAS_SALTYARD = True
except ImportError:
    HAS_SALTYARD = False

__virtualname__ = "saltyard_pki"

# The Marathon-API emulator (local cluster only) runs on marathon nodes and starts tasks on the
# agents' engines through their TLS listeners.
DOCKER_CLIENT_ROLES = {"marathon"}


def __virtual__():
    if not HAS_SALTYARD:
        return (False, "the saltyard package is not installed in the salt-master's Python")
    return __virtualname__


def ext_pillar(minion_id, pillar, store):
    saltyard = pillar.get("saltyard", {})
    node, roles = saltyard.get("node"), saltyard.get("roles")
    if not node or not roles:
        raise ValueError(
            f"no saltyard:node/roles in the pillar of {minion_id!r}: list saltyard_inventory "
            "before saltyard_pki in ext_pillar"
        )
    extra = pillar.get("pki", {}).get("extra_names", [])
    if not isinstance(extra, list) or not all(isinstance(n, str) and n for n in extra):
        raise ValueError(f"pillar pki:extra_names must be a list of names, got {extra!r}")
    names = [node["name"], node["address"], *extra]
    # Behind the LVS director (direct routing) a registry answers clients that connected to the
    # VIP: its certificate must carry the VIP (pillar registry:vip:address, from the site pillar,
    # which Salt compiles before the ext_pillars) as an IP SAN. A command's pillar override
    # reaches here too, so a VIP that the states would refuse is left out: the cluster CA never
    # signs it, and the refused command does not re-issue the certificate. The registry state
    # reports the error, from the same check (saltyard.inventory.check_vip).
    vip = ((pillar.get("registry") or {}).get("vip") or {}).get("address")
    if "registry" in roles and vip:
        try:
            vip = inventory.check_vip(
                vip, saltyard.get("cluster", {}).get("network", {}), saltyard.get("nodes", [])
            )
        except ValueError:
            vip = None
        if vip and vip not in names:
            names.append(vip)
    domain = saltyard.get("cluster", {}).get("domain")
    if domain:
        names.append(f"{node['name']}.{domain}")
    with pki.Store(store).locked() as cas:
        own = cas.issue("cluster", node["name"], names, server=True)
        result = {"ca": cas.ca_pem("cluster"), "node": {"cert": own.cert, "key": own.key}}
        if "docker" in roles:
            result["docker_clients_ca"] = cas.ca_pem("docker-clients")
        if DOCKER_CLIENT_ROLES & set(roles):
            client = cas.issue("docker-clients", node["name"], [], server=False)
            result["docker_client"] = {"cert": client.cert, "key": client.key}
    return {"pki": result}
