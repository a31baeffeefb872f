{%- from 'docker/map.jinja' import docker with context %}
{%- set tls = docker.tls_listener %}
{%- set pki = salt['pillar.get']('pki', {}) %}
{%- if tls.enabled and not (pki.get('docker_clients_ca') and pki.get('node')) %}
{{ raise("pillar docker:tls_listener:enabled is True but the pillar has no pki:docker_clients_ca / pki:node (the master's saltyard_pki ext_pillar serves them to docker nodes)") }}
{%- endif %}
include:
  - base
  - logging.forward

# Refuse a storage driver other than overlay2, or a data root on XFS with ftype=0 or on a
# filesystem without d_type, before any change (order 1 with failhard stops the whole run).
docker-storage-preflight:
  docker_storage.preflight:
    - name: {{ docker.data_root }}
    - driver: {{ docker.storage_driver | json }}
    - order: 1
    - failhard: True

# Written before the package is installed, so the engine's very first start uses it.
docker-daemon-config:
  file.serialize:
    - name: /etc/docker/daemon.json
    - makedirs: True
    - mode: '0644'
    - serializer: json
    - dataset:
        data-root: {{ docker.data_root }}
        storage-driver: {{ docker.storage_driver }}
        log-driver: {{ docker.log_driver }}
        log-opts: {{ docker.log_opts | json }}
        insecure-registries: {{ docker.insecure_registries | json }}
        live-restore: {{ docker.live_restore | json }}
        {%- if tls.enabled %}
        tlsverify: true
        tlscacert: {{ tls.dir }}/ca.pem
        tlscert: {{ tls.dir }}/cert.pem
        tlskey: {{ tls.dir }}/key.pem
        {%- endif %}
    - require:
      - docker_storage: docker-storage-preflight
      # The log-opts name the container-log socket: only once rsyslog runs with it (else the
      # engine would restart into a configuration whose socket is missing).
      - service: rsyslog

{%- if tls.enabled %}
{#- Clients are verified against the docker-clients CA only: a node certificate from the cluster
    CA does not open the engine. #}
{%- for name, pem, mode in [('ca.pem', pki.docker_clients_ca, '0644'), ('cert.pem', pki.node.cert, '0644'), ('key.pem', pki.node.key, '0600')] %}
docker-tls-{{ name }}:
  file.managed:
    - name: {{ tls.dir }}/{{ name }}
    - makedirs: True
    - mode: '{{ mode }}'
    - show_changes: False
    - contents: {{ pem | json }}
    - require_in:
      - file: docker-daemon-config
    - watch_in:
      - service: docker
{%- endfor %}
{%- else %}
# Listener off: daemon.json and the listeners drop-in below lose the TLS settings and the TCP
# port (the engine restarts on that); the certificate and key it served with go too, once the
# engine runs without them.
docker-tls-dir:
  file.absent:
    - name: {{ tls.dir }}
    - require:
      - service: docker
{%- endif %}

# Every engine trusts the cluster CA for the cluster's registries (by name and by address) and
# for their VIP on the LVS director, which is how agents and the build node reach them.
{%- set registry_hosts = [] %}
{%- for reg in salt['pillar.get']('saltyard:members:registry', []) %}
{%- do registry_hosts.extend([reg.name, reg.address]) %}
{%- endfor %}
{%- if salt['pillar.get']('registry:vip:address') %}
{%- do registry_hosts.append(salt['pillar.get']('registry:vip:address')) %}
{%- endif %}
{%- for host in registry_hosts %}
docker-registry-ca-{{ host }}:
  file.managed:
    - name: /etc/docker/certs.d/{{ host }}:{{ salt['pillar.get']('registry:port', 5000) }}/ca.crt
    - makedirs: True
    - mode: '0644'
    - contents: {{ pki.get('ca', '') | json }}
{%- endfor %}

# Debian's unit passes -H fd:// on the command line, and dockerd refuses `hosts` in daemon.json
# next to an -H flag, so the listeners are set here: the local socket, plus the TLS port when on.
docker-listeners:
  file.managed:
    - name: /etc/systemd/system/docker.service.d/saltyard-listeners.conf
    - makedirs: True
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard docker).
        [Service]
        ExecStart=
        ExecStart=/usr/sbin/dockerd -H fd://{% if tls.enabled %} -H tcp://{{ salt['pillar.get']('saltyard:node:address') }}:{{ tls.port }}{% endif %} --containerd=/run/containerd/containerd.sock $DOCKER_OPTS
    - require:
      - docker_storage: docker-storage-preflight

{#- Debian's docker.io recommends apparmor, which the install below leaves out: on a kernel with
    AppArmor on (a machine or VM, not a container on a host without it), dockerd then fails every
    container start ("the docker-default profile could not be loaded: apparmor_parser not
    found"). #}
{%- set apparmor = '/sys/module/apparmor/parameters/enabled' %}
{%- if grains.get('virtual') != 'container' and salt['file.file_exists'](apparmor) and salt['file.read'](apparmor).strip() == 'Y' %}
docker-apparmor:
  pkg.installed:
    - name: apparmor
    - install_recommends: False
    - require_in:
      - service: docker
{%- endif %}

docker-engine:
  pkg.installed:
    - name: {{ docker.package }}
    - install_recommends: False
    - require:
      - file: docker-daemon-config
      - file: docker-listeners
      # The syslog log driver needs its socket and a running syslog before the first container
      # starts.
      - service: rsyslog
      - service: logging-container-socket

# The engine must start (or restart) with the listeners above: systemd reads a drop-in only on a
# daemon-reload. On a node whose image carries docker.io already (a VM agent), no package
# install does it, and the unit loaded before the drop-in existed kept Debian's ExecStart.
docker-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: docker-listeners

docker:
  service.running:
    - enable: True
    - require:
      - pkg: docker-engine
      - cmd: docker-systemd-reload
    - watch:
      - file: docker-daemon-config
      - file: docker-listeners
