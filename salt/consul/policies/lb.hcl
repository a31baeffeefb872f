# Consul ACL policy of consul-template on the load balancers: read the catalog (services, their
# instances and health) and the gray releases' canary shares, nothing else.
node_prefix "" {
  policy = "read"
}

service_prefix "" {
  policy = "read"
}

# saltyard/release/<app>/<env>/canary-share, written by the release orchestration.
key_prefix "saltyard/release/" {
  policy = "read"
}
