{#- The Marathon-API emulator: a DEVELOPMENT STAND-IN for Marathon in the local cluster only
    (pillar marathon:emulator:enabled). Tasks run on the mesos-agent nodes' Docker engines, reached
    over TLS with a client certificate from the docker-clients CA; no engine listens without TLS.
    It reads MARATHON_HTTP_CREDENTIALS from /etc/default/marathon, as Marathon would. -#}
{%- from 'marathon/map.jinja' import marathon with context %}
{%- set emulator = marathon.emulator %}
{%- set me = salt['pillar.get']('saltyard:node', {}) %}
{%- set pki = salt['pillar.get']('pki', {}) %}
{%- set engine_port = salt['pillar.get']('docker:tls_listener:port', 2376) %}
{%- if not salt['pillar.get']('docker:tls_listener:enabled') %}
{{ raise("pillar marathon:emulator:enabled needs docker:tls_listener:enabled: the emulator reaches the agents' engines only over TLS") }}
{%- endif %}
{%- if not pki.get('docker_client') %}
{{ raise("pillar pki:docker_client is missing for " ~ me.name ~ ": the master's saltyard_pki ext_pillar issues it to marathon nodes") }}
{%- endif %}
{%- set agents = [] %}
{%- for node in salt['pillar.get']('saltyard:nodes', []) if 'mesos-agent' in node.roles %}
{#- Published ports bind to the agent's cluster address, where health checks reach them. #}
{%- set reserved = (',@role=' ~ node.mesos_role) if node.get('mesos_role') else '' %}
{%- do agents.append(node.name ~ '=tcp://' ~ node.address ~ ':' ~ engine_port ~ ':env=' ~ node.env ~ ',@bind=' ~ node.address ~ reserved) %}
{%- endfor %}
{%- if not agents %}
{{ raise("marathon:emulator:enabled but the inventory has no mesos-agent node to run tasks on") }}
{%- endif %}

{%- set command = [
    emulator.python, '-m', 'saltyard.marathon_emulator',
    '--listen', me.address ~ ':' ~ marathon.http_port,
    '--state-file', emulator.state_dir ~ '/state.json',
    '--cluster-name', salt['pillar.get']('saltyard:cluster:name', 'saltyard'),
    '--tls-ca', emulator.tls_dir ~ '/ca.pem',
    '--tls-cert', emulator.tls_dir ~ '/cert.pem',
    '--tls-key', emulator.tls_dir ~ '/key.pem'] %}
{#- The cluster's registries: their VIP (how agents pull), each by name, plus any in pillar. #}
{%- set registry_port = salt['pillar.get']('registry:port', 5000) %}
{%- set pull_from = salt['pillar.get']('saltyard:members:registry', []) | map(attribute='name') | map('regex_replace', '$', ':' ~ registry_port) | list %}
{%- if salt['pillar.get']('registry:vip:address') %}
{%- do pull_from.insert(0, salt['pillar.get']('registry:vip:address') ~ ':' ~ registry_port) %}
{%- endif %}
{%- for registry in pull_from + emulator.pull_from %}{% do command.extend(['--pull-from', registry]) %}{% endfor %}
{%- set pull_password = salt['pillar.get']('registry:users:pull', '') %}
{%- for agent in agents %}{% do command.extend(['--agent', agent]) %}{% endfor %}
{#- As Marathon's flags (marathon:mesos_role, marathon:default_accepted_resource_roles). #}
{%- if marathon.mesos_role %}{% do command.extend(['--mesos-role', marathon.mesos_role]) %}{% endif %}
{%- if marathon.default_accepted_resource_roles %}
{%- do command.extend(['--default-accepted-resource-roles', marathon.default_accepted_resource_roles | join(',')]) %}
{%- endif %}

{%- for name, pem, mode in [('ca.pem', pki.ca, '0644'), ('cert.pem', pki.docker_client.cert, '0644'), ('key.pem', pki.docker_client.key, '0600')] %}
marathon-emulator-tls-{{ name }}:
  file.managed:
    - name: {{ emulator.tls_dir }}/{{ name }}
    - makedirs: True
    - mode: '{{ mode }}'
    - show_changes: False
    - contents: {{ pem | json }}
    - watch_in:
      - service: saltyard-marathon-emulator
{%- endfor %}

# The registry user the agents pull with; a file of its own (0600) so it stays out of `ps`.
marathon-emulator-registry-credentials:
  file.managed:
    - name: {{ emulator.tls_dir }}/registry.env
    - makedirs: True
    - mode: '0600'
    - show_changes: False
    - contents: |
        {%- if pull_password %}
        SALTYARD_REGISTRY_CREDENTIALS=pull:{{ pull_password }}
        {%- endif %}
    - watch_in:
      - service: saltyard-marathon-emulator

marathon-emulator-state-dir:
  file.directory:
    - name: {{ emulator.state_dir }}
    - mode: '0700'

marathon-emulator-unit:
  file.managed:
    - name: /etc/systemd/system/saltyard-marathon-emulator.service
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard marathon.emulator).
        [Unit]
        Description=Marathon-API emulator (saltyard development stand-in, NOT Marathon)
        After=network-online.target
        Wants=network-online.target

        [Service]
        EnvironmentFile=/etc/default/marathon
        EnvironmentFile={{ emulator.tls_dir }}/registry.env
        ExecStart={{ command | join(" ") }}
        Restart=on-failure
        RestartSec=2

        [Install]
        WantedBy=multi-user.target

{#- The installed saltyard code: a new wheel (the bootstrap installs it, not Salt) changes this
    file, which restarts the emulator; the running daemon would keep the old code otherwise. #}
marathon-emulator-code:
  file.managed:
    - name: /etc/saltyard/marathon-emulator.code
    - makedirs: True
    - mode: '0644'
    - contents: {{ salt['saltyard_runtime.code_digest'](emulator.python) }}

saltyard-marathon-emulator:
  service.running:
    - enable: True
    - require:
      - file: marathon-emulator-state-dir
    - watch:
      - file: marathon-emulator-unit
      - file: marathon-defaults
      - file: marathon-emulator-code
