# Consul ACL policy of the release orchestration on the master (saltyard/release/store.py and
# lock.py): the canary shares the lb nodes read, the release records, and the per-app lock.
# tests/consul/test_release_store.py runs the store and the lock with a token of exactly this
# policy, and the lb's token (salt/consul/policies/lb.hcl) reading the share but not writing it.

key_prefix "saltyard/release/" {
  policy = "write"
}

# The lock's session lives on the node of the Consul agent the orchestration talks to.
session_prefix "" {
  policy = "write"
}
