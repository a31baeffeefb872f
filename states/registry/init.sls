{#- A Docker registry (Debian's docker-registry, distribution 2.8): TLS with the node's
    certificate from the cluster CA, htpasswd (bcrypt) users, deletes enabled, the debug health
    endpoint, shared storage and http.secret with its peer. -#}
{%- from 'registry/map.jinja' import registry with context %}
{%- from 'registry/vip.jinja' import vip with context %}
{%- set me = salt['pillar.get']('saltyard:node', {}) %}
{%- set pki = salt['pillar.get']('pki', {}) %}
{%- set conf = registry.config_dir %}
{%- set storage = dict(registry.storage) %}
{%- do storage.update({'delete': {'enabled': True}, 'maintenance': {'readonly': {'enabled': registry.read_only}}}) %}
{%- set root = registry.storage.get('filesystem', {}).get('rootdirectory') %}
{%- if not pki.get('node') %}
{{ raise("pillar pki:node is missing for " ~ me.name ~ ": the master's saltyard_pki ext_pillar issues it") }}
{%- endif %}

include:
  # The registry VIP on lo and the ARP settings for LVS direct routing (when the VIP is set).
  - registry.vip

# Created before the package, with fixed ids, so that files can be owned by it before the
# service first starts and both registries agree on the shared storage's owner.
docker-registry-group:
  group.present:
    - name: docker-registry
    - gid: {{ registry.gid }}
    - system: True

docker-registry-user:
  user.present:
    - name: docker-registry
    - uid: {{ registry.uid }}
    - gid: {{ registry.gid }}
    - system: True
    - home: /var/lib/docker-registry
    - createhome: False
    - shell: /usr/sbin/nologin
    - require:
      - group: docker-registry-group

registry-htpasswd-tool:
  pkg.installed:
    - name: apache2-utils
    - install_recommends: False

{%- for name, pem, mode in [('cert.pem', pki.node.cert, '0644'), ('key.pem', pki.node.key, '0640')] %}
registry-tls-{{ name }}:
  file.managed:
    - name: {{ conf }}/tls/{{ name }}
    - makedirs: True
    - user: root
    - group: docker-registry
    - mode: '{{ mode }}'
    - show_changes: False
    - contents: {{ pem | json }}
    - require:
      - user: docker-registry-user
    - require_in:
      - pkg: docker-registry
    - watch_in:
      - service: docker-registry
{%- endfor %}

registry-htpasswd:
  file.managed:
    - name: {{ conf }}/htpasswd
    - replace: False
    - user: root
    - group: docker-registry
    - mode: '0640'
    - require:
      - user: docker-registry-user

{%- for user, password in registry.users | dictsort %}
# bcrypt hashes differ on every run, so the hash is made again only when the password does not
# verify or the hash has another cost (`$2y$NN$` is the cost). The password travels on stdin,
# never on a command line.
registry-user-{{ user }}:
  cmd.run:
    - name: printf '%s' "$REGISTRY_PASSWORD" | htpasswd -i -B -C {{ registry.htpasswd_cost }} {{ conf }}/htpasswd {{ user }}
    - unless: >-
        printf '%s' "$REGISTRY_PASSWORD" | htpasswd -i -v {{ conf }}/htpasswd {{ user }} &&
        grep -q '^{{ user }}:[$]2y[$]{{ '%02d' % registry.htpasswd_cost }}[$]' {{ conf }}/htpasswd
    - env:
        REGISTRY_PASSWORD: {{ password | json }}
    - output_loglevel: quiet
    - require:
      - file: registry-htpasswd
      - pkg: registry-htpasswd-tool
    - require_in:
      - pkg: docker-registry
    - watch_in:
      - service: docker-registry
{%- endfor %}

{%- if root %}
registry-storage:
  file.directory:
    - name: {{ root }}
    - user: docker-registry
    - group: docker-registry
    - mode: '0750'
    - require:
      - user: docker-registry-user
    - require_in:
      - pkg: docker-registry
{%- endif %}

registry-config:
  file.serialize:
    - name: {{ conf }}/config.yml
    - makedirs: True
    - user: root
    - group: docker-registry
    # Holds http.secret.
    - mode: '0640'
    - show_changes: False
    - serializer: yaml
    - dataset:
        version: 0.1
        log:
          level: info
          fields: {service: registry, node: {{ me.name }}}
        storage: {{ storage | json }}
        http:
          # Behind the VIP (direct routing) connections arrive addressed to the VIP, which sits
          # on lo: the registry then listens on every address of the node.
          addr: {{ (':' if vip else me.address ~ ':') ~ registry.port }}
          secret: {{ registry.http_secret | json }}
          tls:
            certificate: {{ conf }}/tls/cert.pem
            key: {{ conf }}/tls/key.pem
          debug:
            addr: {{ me.address }}:{{ registry.debug_port }}
          headers:
            X-Content-Type-Options: [nosniff]
        auth:
          htpasswd:
            realm: saltyard-registry
            path: {{ conf }}/htpasswd
        health:
          storagedriver: {enabled: true, interval: 10s, threshold: 3}
    - require:
      - user: docker-registry-user
    - require_in:
      - pkg: docker-registry

docker-registry:
  pkg.installed:
    - name: {{ registry.package }}
    - install_recommends: False
  service.running:
    - enable: True
    - require:
      - pkg: docker-registry
    - watch:
      - file: registry-config
