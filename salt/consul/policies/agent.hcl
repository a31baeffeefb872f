# Consul ACL policy of every Consul agent (its `acl.tokens.agent`): register and update its own
# node in the catalog, read services (health checks and DNS of the local agent).
node_prefix "" {
  policy = "write"
}

service_prefix "" {
  policy = "read"
}
