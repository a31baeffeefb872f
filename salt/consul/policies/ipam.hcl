# Consul ACL policy of the IPAM plugin (saltyard.ipam), the minimum it needs: its allocations,
# one key per address under saltyard/ipam/ (created with cas=0, deleted with cas=<index>).
# tests/ipam runs the plugin with a token of exactly this policy. docs/ipam.md explains it.
key_prefix "saltyard/ipam/" {
  policy = "write"
}
