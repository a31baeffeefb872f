# Consul ACL policy of the Marathon-to-Consul bridge (saltyard.bridge), the minimum it needs.
# tests/bridge runs the bridge with a token of exactly this policy, and drops each rule in turn
# to show the bridge fails without it. docs/bridge.md explains each rule.

# The external nodes the bridge registers services on, one per Marathon agent host.
node_prefix "marathon-" {
  policy = "write"
}

# Service names come from app labels or app ids, so no narrower prefix holds for all apps.
service_prefix "" {
  policy = "write"
}

# The leader lock (and the session check that fences every catalog write).
key_prefix "saltyard/bridge/" {
  policy = "write"
}

# The lock's session lives on the node of the Consul agent the bridge talks to.
session_prefix "" {
  policy = "write"
}

# The IPAM plugin's allocations (saltyard.ipam): with --ipam-reconcile the bridge reads them all
# and frees those whose Marathon task is gone (each host's plugin frees only its own host's, so
# nobody else frees a gone host's). Needed only with that flag (pillar discovery:ipam_reconcile).
key_prefix "saltyard/ipam/" {
  policy = "write"
}
