{%- from 'marathon/map.jinja' import marathon with context %}
{%- from 'mesos/map.jinja' import mesos, zk_hosts with context %}
{%- set me = salt['pillar.get']('saltyard:node', {}) %}
{%- set creds = marathon.http_credentials %}
{%- if not creds.get('user') or not creds.get('password') %}
{{ raise("pillar marathon:http_credentials needs user and password (the local cluster generates them on the master; production pillar must provide them)") }}
{%- endif %}
include:
  - mesos.package
{%- if marathon.emulator.enabled %}
  - marathon.emulator
{%- endif %}

{%- set settings = {
    'MASTER': 'zk://' ~ zk_hosts ~ mesos.zk_path,
    'ZK': 'zk://' ~ zk_hosts ~ marathon.zk_path,
    'HOSTNAME': me.address,
    'HTTP_PORT': marathon.http_port,
    'HTTP_REALM': marathon.http_realm,
    'HTTP_CREDENTIALS': creds.user ~ ':' ~ creds.password,
} %}
{%- if marathon.mesos_role %}{% do settings.update({'MESOS_ROLE': marathon.mesos_role}) %}{% endif %}
{%- if marathon.default_accepted_resource_roles %}
{%- do settings.update({'DEFAULT_ACCEPTED_RESOURCE_ROLES': marathon.default_accepted_resource_roles | join(',')}) %}
{%- endif %}
{%- for key, value in marathon.settings.items() %}{% do settings.update({key: value}) %}{% endfor %}

marathon-defaults:
  file.managed:
    - name: /etc/default/marathon
    # Holds the HTTP credentials: readable by root only, and never shown in a diff.
    - mode: '0600'
    - show_changes: False
    - contents: |
        # Managed by Salt (saltyard marathon). Each MARATHON_X becomes Marathon's --x flag.
        {%- for key, value in settings | dictsort %}
        MARATHON_{{ key }}={{ value }}
        {%- endfor %}

{%- if marathon.install_package %}
marathon-package:
  pkg.installed:
    - name: {{ marathon.package }}
    - require:
      - sls: mesos.package

marathon:
  service.running:
    - enable: True
    - require:
      - pkg: marathon-package
    - watch:
      - file: marathon-defaults
{%- endif %}
