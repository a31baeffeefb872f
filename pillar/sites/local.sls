# The local cluster: systemd containers on one Docker network (salt/inventory.yaml).
base:
  # Containers share the host's kernel: only namespaced net.* sysctls here (defaults.yaml).
  time:
    # The master serves its own clock to the cluster; no node reaches outside the cluster.
    servers: [master]
    serve_networks: [172.30.0.0/24]
    # The clock is the host's: chronyd runs with -x.
    set_clock: False

# No kernel:boot here (docs/kernel.md): the VM nodes (lvs1, agent-vm) boot the image's 6.1 until
# `orch.kernel_rollout` names the kernel to roll out (pillar kernel_rollout:kernel, e.g.
# linux-image-6.12-cloud-amd64 from bookworm-security, a stand-in for the platform's
# 3.16 -> 4.4.27 move), so that the rollout installs it, and no highstate (agent-vm has the
# kernel role: docker implies it) installs a kernel behind the rollout's back. Containers run
# the host's kernel: the role leaves them alone. A production site sets kernel:boot
# (example-prod.sls).

docker:
  storage_driver: overlay2
  log_driver: syslog
  # The Marathon-API emulator starts tasks on the agents' engines over TLS (client certificates
  # from the master's docker-clients CA only).
  tls_listener:
    enabled: True

# No Mesos or Marathon package source is reachable here: their states lay down and check every
# configuration file, and install nothing. The Marathon-API emulator (a development stand-in)
# takes Marathon's place in the local cluster.
mesos:
  install_packages: False
  # The emulator answers the Mesos master's maintenance endpoints (drain, down, up); its password
  # is Marathon's, generated on the master.
  operator_api:
    url: http://control1:8080
    username: saltyard

marathon:
  install_package: False
  # Marathon registers with the role agent-vm's resources are reserved for (salt/inventory.yaml:
  # mesos_role), and apps that name no acceptedResourceRoles take unreserved resources only: the
  # general workload never lands on the slow VM agent; an app that wants it says
  # acceptedResourceRoles: [vm-agents] (docs/marathon-emulator.md, "Static reservations").
  mesos_role: vm-agents
  default_accepted_resource_roles: ['*']
  # A development stand-in for Marathon (saltyard.marathon_emulator), on the marathon node.
  emulator:
    enabled: True
  http_credentials:
    user: saltyard   # the password is generated on the master (salt/secrets.yaml)

registry:
  # The registry pair's VIP on the LVS director lvs1 (states/lvs, direct routing; docs/lvs.md):
  # a free address in the VMs' half of the subnet, outside Docker's ip_range (172.30.0.0/25)
  # and every node's address.
  vip:
    address: 172.30.0.200
  # The Salt registry module's connection (on every node; without a url: the VIP above, else
  # the inventory's first registry node). The user and its password follow the node's roles
  # (salt/secrets.yaml: push on the build node, pull on the others that use the registry).
  client:
    ca_file: /usr/local/share/ca-certificates/saltyard-cluster.crt

# The agents' macvlan network and its IPAM plugin (states/ipam, docs/ipam.md). Tasks on it get
# an address of the cluster network itself, from this pool: 172.30.0.224-239, clear of every
# node (.10-.70 and lvs1 at .140), the registry VIP (.200), the gateway (.1) and Docker's
# ip_range (172.30.0.0/25, where the node containers' addresses come from); the render refuses
# a pool that is not. The parent is each agent's own eth0 on the cluster bridge (the interface
# holding its inventory address), never the host machine's.
ipam:
  pools:
    - name: tasks
      subnet: 172.30.0.0/24
      gateway: 172.30.0.1
      range: 172.30.0.224/28

# The bridge (discovery role) frees allocations of the pool above whose Marathon task is gone,
# at its full resyncs: a short grace and resync interval here so that the cluster tests see it
# happen within a minute (defaults: 300 s and 60 s).
discovery:
  resync_interval: 20
  ipam_reconcile:
    enabled: True
    grace: 20

# Consul 1.8.7 (MPL) from Debian bullseye: only that package comes from the bullseye suite. The
# gossip key and the ACL tokens are generated on the master (salt/secrets.yaml).
consul:
  package_source:
    source: deb http://deb.debian.org/debian bullseye main
    pin: release n=bullseye

# The application load balancers (lb role). The virtual hosts are <app>.<env>.saltyard.test (the
# inventory's cluster domain). consul-template is built on the operator's machine from its Go
# module by scripts/build-consul-template.sh (every `make` target runs it) into artifacts/
# (gitignored), which the master serves from the checkout. No source_hash: for salt:// sources
# Salt verifies the file against the hash the master computes itself, over the authenticated
# master connection, and a hash written here would go stale with every rebuild.
lb:
  consul_template:
    version: 0.41.1
    source: salt://artifacts/consul-template/0.41.1/consul-template_0.41.1_linux_amd64.tar.gz

# The git server the build node clones from (states/git_server on the salt-master node):
# git://172.30.0.10/hello.git, first committed from examples/apps/hello; the release data
# (pillar/release/hello.sls) points there.
git_server:
  enabled: True
  repositories:
    hello:
      seed: examples/apps/hello

# The logging role (log1; docs/logging.md). The Flume distribution (Apache Flume 1.11.0's jars and
# saltyard's plugin) is built on the operator's machine by scripts/build-flume.sh (every `make`
# target runs it) into artifacts/ (gitignored), which the master serves from the checkout.
logging:
  flume:
    source: salt://artifacts/flume/1.11.0/saltyard-flume-1.11.0.tar.gz
    # The containers' disk is the host's: a smaller reserve than production's 500 MB.
    channel:
      minimum_required_space_mb: 100
