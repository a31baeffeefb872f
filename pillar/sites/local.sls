# The local cluster: systemd containers on one Docker network (salt/inventory.yaml).
base:
  # Containers share the host's kernel: only namespaced net.* sysctls here (defaults.yaml).
  time:
    # The master serves its own clock to the cluster; no node reaches outside the cluster.
    servers: [master]
    serve_networks: [172.30.0.0/24]
    # The clock is the host's: chronyd runs with -x.
    set_clock: False

kernel:
  min_version: 4.4.27

docker:
  storage_driver: overlay2
  log_driver: syslog

# No Mesos or Marathon package source is reachable here: their states lay down and check every
# configuration file, and install nothing. The Marathon-API emulator (a development stand-in)
# takes Marathon's place in the local cluster.
mesos:
  install_packages: False

marathon:
  install_package: False
  http_credentials:
    user: saltyard   # the password is generated on the master (salt/secrets.yaml)
