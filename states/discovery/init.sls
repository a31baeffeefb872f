{#- The Marathon-to-Consul bridge (saltyard.bridge) on the discovery nodes. When several run,
    one holds the Consul lock and the others wait. Credentials (Marathon's HTTP user, the
    discovery role's Consul token) come from a 0600 environment file, never the command line. -#}
{%- from 'discovery/map.jinja' import discovery with context %}
{%- set marathon_nodes = salt['pillar.get']('saltyard:members:marathon', []) %}
{%- set marathon_url = discovery.marathon_url or ('http://' ~ marathon_nodes[0].address ~ ':' ~ salt['pillar.get']('marathon:http_port', 8080) if marathon_nodes else '') %}
{%- set creds = salt['pillar.get']('marathon:http_credentials', {}) %}
{%- set token = salt['pillar.get']('consul:acl:tokens:discovery', '') %}
{%- if not marathon_url %}
{{ raise("the bridge needs Marathon: set pillar discovery:marathon_url or add a marathon node to the inventory") }}
{%- endif %}
{%- if not token %}
{{ raise("pillar consul:acl:tokens:discovery is empty: the bridge's Consul token (generated on the master)") }}
{%- endif %}
{%- set command = [discovery.python, '-m', 'saltyard.bridge',
    '--marathon', marathon_url, '--consul', discovery.consul_url,
    '--listen', discovery.listen, '--resync-interval', discovery.resync_interval | string] %}
{#- Agents' addresses from the inventory, so no name lookup decides where load balancers go. #}
{%- for node in salt['pillar.get']('saltyard:members:mesos-agent', []) %}
{%- do command.extend(['--host-address', node.name ~ '=' ~ node.address]) %}
{%- endfor %}
{#- The cluster's environments (inventory cluster.environments): apps in any other are skipped. #}
{%- set environments = salt['pillar.get']('saltyard:cluster:environments', []) %}
{%- if environments %}
{%- do command.extend(['--environments', environments | join(',')]) %}
{%- endif %}
{#- Freeing IPAM allocations whose Marathon task is gone (docs/bridge.md). A grace the bridge
    would refuse is refused here, before the unit changes. #}
{%- set ipam_grace = discovery.ipam_reconcile.grace %}
{%- if ipam_grace is not number or ipam_grace is sameas true or ipam_grace is sameas false or not ipam_grace > 0 %}
{{ raise("pillar discovery:ipam_reconcile:grace " ~ ipam_grace ~ ": expected a number of seconds > 0") }}
{%- endif %}
{%- if discovery.ipam_reconcile.enabled %}
{%- do command.extend(['--ipam-reconcile', '--ipam-grace', discovery.ipam_reconcile.grace | string]) %}
{%- endif %}
{%- do command.extend(discovery.extra_args) %}
include:
  - consul

bridge-credentials:
  file.managed:
    - name: /etc/saltyard/bridge.env
    - makedirs: True
    - mode: '0600'
    - show_changes: False
    - contents: |
        CONSUL_HTTP_TOKEN={{ token }}
        {%- if creds.get('user') and creds.get('password') %}
        MARATHON_HTTP_CREDENTIALS={{ creds.user }}:{{ creds.password }}
        {%- endif %}

bridge-unit:
  file.managed:
    - name: /etc/systemd/system/saltyard-bridge.service
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard discovery).
        [Unit]
        Description=saltyard Marathon-to-Consul bridge
        After=network-online.target consul.service
        Wants=network-online.target

        [Service]
        EnvironmentFile=/etc/saltyard/bridge.env
        ExecStart={{ command | join(' ') }}
        Restart=always
        RestartSec=3

        [Install]
        WantedBy=multi-user.target

{#- The installed saltyard code: a new wheel (the bootstrap installs it, not Salt) changes this
    file, which restarts the bridge; the running daemon would keep the old code otherwise. #}
bridge-code:
  file.managed:
    - name: /etc/saltyard/bridge.code
    - makedirs: True
    - mode: '0644'
    - contents: {{ salt['saltyard_runtime.code_digest'](discovery.python) }}

saltyard-bridge:
  service.running:
    - enable: True
    - require:
      - service: consul
    - watch:
      - file: bridge-unit
      - file: bridge-credentials
      - file: bridge-code
