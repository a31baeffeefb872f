# An example production site: real hosts, real NTP, a full set of kernel parameters.
# Copy it as pillar/sites/<yours>.sls and set `saltyard_site: <yours>` in the master config.
# Secrets (credentials, tokens) never go here in clear: they come from a pillar that the
# repository only describes.
base:
  sysctl:
    net.core.somaxconn: 32768
    net.ipv4.tcp_max_syn_backlog: 16384
    net.ipv4.tcp_fin_timeout: 15
    net.ipv4.tcp_keepalive_time: 300
    net.ipv4.ip_forward: 1
    vm.max_map_count: 262144
    vm.swappiness: 1
    fs.file-max: 2097152
    fs.inotify.max_user_watches: 524288
  time:
    servers: [ntp1.example.internal, ntp2.example.internal]
    upstream: [0.debian.pool.ntp.org, 1.debian.pool.ntp.org]
    serve_networks: [10.20.0.0/16]
    set_clock: True
  rsyslog:
    forward_to: log1.example.internal

kernel:
  min_version: 4.4.27

docker:
  storage_driver: overlay2
  data_root: /var/lib/docker
  log_driver: syslog

mesos:
  install_packages: True
  package_source:
    repo: deb [signed-by=/usr/share/keyrings/mesos.gpg] https://packages.example.internal/mesos bookworm main
    # The state fetches the key over https and writes the keyring only when its primary keys'
    # fingerprints are exactly these (check them out of band; this one is a placeholder).
    keyring:
      path: /usr/share/keyrings/mesos.gpg
      source: https://packages.example.internal/mesos/mesos.gpg
      fingerprints: [0123456789ABCDEF0123456789ABCDEF01234567]

marathon:
  install_package: True
  # http_credentials come from a pillar outside this repository (e.g. GPG-encrypted pillar):
  # marathon: {http_credentials: {user: ops, password: ...}}

consul:
  # A site repository that carries consul 1.8.x (MPL); only that package is taken from it.
  package_source:
    source: deb [signed-by=/usr/share/keyrings/saltyard-consul.gpg] https://packages.example.internal/consul bookworm main
    pin: origin packages.example.internal
    keyring:
      path: /usr/share/keyrings/saltyard-consul.gpg
      source: https://packages.example.internal/consul/consul.gpg
      fingerprints: [89ABCDEF0123456789ABCDEF0123456789ABCDEF]

# The agents' macvlan network (states/ipam, docs/ipam.md): containers take addresses of the
# hosts' own network from this pool, which the site's inventory must leave free (no host, VIP or
# Docker ip_range in it: the render refuses a pool that overlaps any of them). The parent is the
# interface holding each agent's inventory address unless ipam:network:parent names another.
ipam:
  pools:
    - name: tasks
      subnet: 10.20.0.0/16
      gateway: 10.20.0.1
      range: 10.20.128.0/20
      reserved: [10.20.128.1-10.20.128.9]

lb:
  domain: apps.example.internal
  consul_template:
    version: 0.41.1
    # HashiCorp's release archive, verified by sha256 before it is unpacked. Pin the hash itself
    # (sha256=...) once you have checked the SHA256SUMS file's signature; the URL of that file
    # also works, but then only TLS vouches for it.
    source: https://releases.hashicorp.com/consul-template/0.41.1/consul-template_0.41.1_linux_amd64.zip
    source_hash: https://releases.hashicorp.com/consul-template/0.41.1/consul-template_0.41.1_SHA256SUMS

# Container lines through every node's rsyslog (RELP) to the log node's Flume, which sends them to
# Kafka, keyed by app (docs/logging.md). The Flume distribution comes from the site's artifact
# store (scripts/build-flume.sh makes it), checked against its sha256.
logging:
  node: log1.example.internal
  flume:
    source: https://artifacts.example.internal/saltyard/saltyard-flume-1.11.0.tar.gz
    source_hash: sha256=0000000000000000000000000000000000000000000000000000000000000000
    heap_mb: 1024
    sink:
      type: kafka
      bootstrap_servers: kafka1.example.internal:9092,kafka2.example.internal:9092
      topic: applogs
      options:
        kafka.producer.linger.ms: 5
        kafka.producer.compression.type: lz4
    # Applications that send their own lines (docs/logging.md: what each source can lose).
    syslog_sources:
      - {name: app_udp, protocol: udp, port: 5140, env: prod}
      - {name: app_tcp, protocol: tcp, port: 5140, env: prod}
