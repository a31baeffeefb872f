# Consul ACL policy of `salt-run ipam.list` (_runners/ipam.py) on the salt master: it reads the
# IPAM plugin's allocations and changes none of them. The plugin itself writes with ipam.hcl.
key_prefix "saltyard/ipam/" {
  policy = "read"
}
