{#- A Consul agent on every node; servers on the consul-server nodes (bootstrap_expect = their
    count). Gossip is encrypted and ACLs deny by default; the servers register the ACL policies
    and the tokens generated on the master (consul.acl). -#}
{%- from 'consul/map.jinja' import consul, servers, me, is_server with context %}
{%- from 'lib/apt_keyring.jinja' import keyring_states with context %}
{%- set pin = consul.package_source.pin %}
{%- set keyring = consul.package_source.keyring %}
include:
  - base
{%- if is_server and servers[0].name == me.name %}
  - consul.acl
{%- endif %}

{%- if keyring.source %}
{{ keyring_states('consul-apt-keyring', keyring) }}
{%- endif %}

# Only the consul package may come from the extra suite: everything else there is pinned away.
consul-apt-source:
  file.managed:
    - name: /etc/apt/sources.list.d/saltyard-consul.list
    - contents: {{ consul.package_source.source | json }}
    {%- if keyring.source %}
    - require:
      - apt_keyring: consul-apt-keyring
    {%- endif %}
consul-apt-pin:
  file.managed:
    - name: /etc/apt/preferences.d/saltyard-consul
    - contents: |
        # Managed by Salt (saltyard consul): only {{ consul.package }} from {{ pin }}.
        Package: {{ consul.package }}
        Pin: {{ pin }}
        Pin-Priority: 500

        Package: *
        Pin: {{ pin }}
        Pin-Priority: -1

# The service user exists before the package, so the configuration (it holds the gossip key and
# tokens) can be group-readable by it before the agent first starts.
consul-group:
  group.present:
    - name: consul
    - system: True
consul-user:
  user.present:
    - name: consul
    - gid: consul
    - system: True
    - home: {{ consul.data_dir }}
    - createhome: False
    - shell: /usr/sbin/nologin
    - require:
      - group: consul-group


{%- set acl_tokens = {'agent': consul.acl.tokens.agent} %}
{%- if is_server %}{% do acl_tokens.update({'master': consul.acl.master_token}) %}{% endif %}
consul-config:
  file.serialize:
    - name: {{ consul.config_dir }}/saltyard.json
    - makedirs: True
    - user: root
    - group: consul
    - mode: '0640'
    - show_changes: False
    - serializer: json
    - dataset:
        datacenter: {{ salt['pillar.get']('saltyard:cluster:name', 'dc1') | json }}
        node_name: {{ me.name | json }}
        data_dir: {{ consul.data_dir | json }}
        bind_addr: {{ me.address | json }}
        advertise_addr: {{ me.address | json }}
        client_addr: {{ consul.http_addr.rpartition(':')[0] | json }}
        ports: {http: {{ consul.http_addr.rpartition(':')[2] | int }}}
        retry_join: {{ servers | map(attribute='address') | list | json }}
        server: {{ is_server | json }}
        {%- if is_server %}
        bootstrap_expect: {{ servers | length }}
        {%- endif %}
        encrypt: {{ consul.encrypt | json }}
        log_level: {{ consul.log_level | json }}
        disable_update_check: true
        acl:
          enabled: true
          default_policy: deny
          down_policy: extend-cache
          tokens: {{ acl_tokens | json }}
    - require:
      - user: consul-user

consul-package:
  pkg.installed:
    - name: {{ consul.package }}
    - refresh: True
    - install_recommends: False
    - require:
      - file: consul-apt-source
      - file: consul-apt-pin
      - file: consul-config

# After the package: its maintainer script sets its own mode on the directory.
consul-data-dir:
  file.directory:
    - name: {{ consul.data_dir }}
    - user: consul
    - group: consul
    - mode: '0750'
    - require:
      - pkg: consul-package

consul:
  service.running:
    - enable: True
    - require:
      - pkg: consul-package
      - file: consul-data-dir
    - watch:
      - file: consul-config
