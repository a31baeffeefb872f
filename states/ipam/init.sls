{#- The saltyard IPAM plugin (saltyard.ipam, docs/ipam.md) on every Mesos agent, and the macvlan
    network whose addresses it hands out. The plugin is a Docker remote IPAM driver whose
    allocations live in Consul: it starts before the Docker engine and stops after it (an engine
    starting with such a network asks the plugin at once; a container removed while the plugin
    is down waits for it). -#}
{%- from 'ipam/map.jinja' import ipam, network, pool with context %}
{%- set token = salt['pillar.get']('consul:acl:tokens:ipam', '') %}
{%- if not token %}
{{ raise("pillar consul:acl:tokens:ipam is empty: the IPAM plugin's Consul token (generated on the master, salt/secrets.yaml)") }}
{%- endif %}
{%- set socket = '/run/docker/plugins/' ~ ipam.plugin_name ~ '.sock' %}
{%- set config = {
    'host': salt['pillar.get']('saltyard:node:name') or grains['id'],
    'plugin': {'name': ipam.plugin_name, 'socket': socket},
    'consul': {'address': ipam.consul.address, 'token_file': ipam.token_file,
               'timeout': ipam.consul.timeout, 'key_prefix': ipam.consul.key_prefix},
    'reconcile': ipam.reconcile,
    'log_level': ipam.log_level,
    'pools': ipam.pools} %}
{#- Docker takes an --ip-range only as a CIDR, and the plugin accepts only its pool's own. #}
{%- set ip_range = pool.range if (pool.get('range') and '/' in (pool.range | string)) else none %}
include:
  - consul
  - docker

ipam-token:
  file.managed:
    - name: {{ ipam.token_file }}
    - makedirs: True
    - mode: '0600'
    - show_changes: False
    - contents: {{ token | json }}

# Checked by the plugin's own parser (python -m saltyard.ipam --check) before it replaces the
# live file: a configuration the plugin would refuse never reaches it.
ipam-config:
  file.serialize:
    - name: {{ ipam.config_file }}
    - makedirs: True
    - mode: '0644'
    - serializer: json
    - serializer_opts:
      - indent: 2
      - sort_keys: True
    - dataset: {{ config | json }}
    - check_cmd: {{ ipam.python }} -m saltyard.ipam --check --config
    - require:
      - file: ipam-token

ipam-unit:
  file.managed:
    - name: /etc/systemd/system/saltyard-ipam.service
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard ipam).
        [Unit]
        Description=saltyard IPAM plugin (Docker IPAM driver {{ ipam.plugin_name }}, allocations in Consul)
        After=network-online.target consul.service
        Wants=network-online.target
        Before=docker.service

        [Service]
        ExecStart={{ ipam.python }} -m saltyard.ipam --config {{ ipam.config_file }}
        Restart=always
        RestartSec=2
        # 2: a configuration or socket the plugin refuses; restarting would not help.
        RestartPreventExitStatus=2

        [Install]
        WantedBy=multi-user.target

# The engine wants the plugin and starts after it (so it stops before it). Only the order
# changes: systemd reloads, the running engine is not restarted.
ipam-docker-order:
  file.managed:
    - name: /etc/systemd/system/docker.service.d/saltyard-ipam.conf
    - makedirs: True
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard ipam).
        [Unit]
        Wants=saltyard-ipam.service
        After=saltyard-ipam.service

ipam-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: ipam-docker-order

{#- The installed saltyard code: a new wheel changes this file, which restarts the plugin (it
    would keep the old code in memory otherwise). #}
ipam-code:
  file.managed:
    - name: /etc/saltyard/ipam.code
    - makedirs: True
    - mode: '0644'
    - contents: {{ salt['saltyard_runtime.code_digest'](ipam.python) }}

saltyard-ipam:
  service.running:
    - enable: True
    - require:
      - file: ipam-docker-order
    - watch:
      - file: ipam-unit
      - file: ipam-config
      - file: ipam-token
      - file: ipam-code

ipam-network:
  macvlan_network.present:
    - name: {{ network.name | json }}
    - parent: {{ network.parent | json }}
    - macvlan_mode: {{ network.macvlan_mode | json }}
    - subnet: {{ pool.subnet | json }}
    - gateway: {{ pool.gateway | json }}
    - ip_range: {{ ip_range | json }}
    - ipam_driver: {{ ipam.plugin_name | json }}
    - ipam_options: {{ {'pool': pool.name} | json }}
    - plugin_socket: {{ socket | json }}
    - require:
      - service: saltyard-ipam
      - service: docker
