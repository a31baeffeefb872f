# Consul ACL policy of consul-template on the load balancers: read the catalog (services, their
# instances and health), nothing else.
node_prefix "" {
  policy = "read"
}

service_prefix "" {
  policy = "read"
}
