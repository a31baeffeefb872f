{#- The lb role: nginx serving <app>.<env>.<domain> for every application in the Consul catalog,
    rendered by consul-template (the catalog is filled by the Marathon-to-Consul bridge). Each
    render is swapped in only when `nginx -t` accepts it, then nginx reloads gracefully; a
    refused render keeps the last good configuration and is logged (syslog tag saltyard-lb).
    See docs/lb.md. -#}
{%- from 'lb/map.jinja' import lb, lb_token with context %}
{%- set ct = lb.consul_template %}
{%- set ct_dir = lb.paths.install_dir ~ '/' ~ ct.version %}
include:
  - consul

# --- nginx ------------------------------------------------------------------------------------
lb-nginx-package:
  pkg.installed:
    - name: {{ lb.nginx.package }}
    - install_recommends: False

# Debian's example site also claims the default server on port 80.
lb-nginx-default-site:
  file.absent:
    - name: /etc/nginx/sites-enabled/default
    - require:
      - pkg: lb-nginx-package

# Judges a candidate nginx file in the context of the whole configuration (a copy of it), for
# check_cmd: `nginx -t` cannot test one included file on its own.
lb-nginx-check-script:
  file.managed:
    - name: {{ lb.paths.check_script }}
    - source: salt://lb/files/saltyard-lb-check.sh
    - mode: '0755'

# Validated before it replaces the live file (check_cmd, as the lvs role does with keepalived -t):
# a candidate nginx refuses fails the state and the live file stays as it was.
lb-nginx-http-config:
  file.managed:
    - name: {{ lb.paths.http_config }}
    - source: salt://lb/files/saltyard-lb.conf.jinja
    - template: jinja
    - context:
        lb: {{ lb | json }}
    - mode: '0644'
    - check_cmd: {{ ([lb.paths.check_script, lb.paths.http_config] + lb.nginx_args) | join(' ') }}
    - require:
      - pkg: lb-nginx-package
      - file: lb-nginx-check-script
      # The candidate includes it: it must exist for the check.
      - file: lb-nginx-apps-config

# Until consul-template's first render: an empty set of virtual hosts (the default server
# answers 404). Never replaced by Salt: consul-template owns its contents.
lb-nginx-apps-config:
  file.managed:
    - name: {{ lb.paths.live }}
    - makedirs: True
    - replace: False
    - mode: '0644'
    - contents: '# Filled by consul-template (saltyard lb) from the Consul catalog.'
    - require:
      - pkg: lb-nginx-package

nginx:
  service.running:
    - enable: True
    - reload: True
    - watch:
      - file: lb-nginx-default-site
      - file: lb-nginx-http-config
      - file: lb-nginx-apps-config

# --- consul-template ----------------------------------------------------------------------------
# The release archive (binary at its top). In production the pillar gives a URL and its sha256;
# the local cluster serves its own build from salt://artifacts/ without a source_hash: for
# salt:// sources Salt checks the file against the hash the master computes itself, over the
# authenticated master connection (see pillar/sites/local.sls). The version is in the path, so
# `if_missing` lets a converged node skip the download (and lets test mode say "nothing to do"
# instead of "would be checked"); a new version is a new directory.
lb-consul-template-archive:
  archive.extracted:
    - name: {{ ct_dir }}
    - if_missing: {{ ct_dir }}/consul-template
    - source: {{ ct.source }}
    {%- if ct.source_hash %}
    - source_hash: {{ ct.source_hash }}
    {%- endif %}
    - enforce_toplevel: False
    - trim_output: True

lb-consul-template-binary:
  file.symlink:
    - name: /usr/local/bin/consul-template
    - target: {{ ct_dir }}/consul-template
    - force: True
    - require:
      - archive: lb-consul-template-archive

lb-apply-script:
  file.managed:
    - name: {{ lb.paths.apply_script }}
    - source: salt://lb/files/saltyard-lb-apply.sh
    - mode: '0755'

lb-staging-dir:
  file.directory:
    - name: {{ salt['file.dirname'](lb.paths.staged) }}
    - mode: '0755'

lb-consul-template-token:
  file.managed:
    - name: {{ lb.paths.config_dir }}/lb.token
    - makedirs: True
    - user: root
    - group: root
    - mode: '0640'
    - show_changes: False
    - contents: {{ lb_token | json }}

lb-consul-template-template:
  file.managed:
    - name: {{ lb.paths.config_dir }}/nginx-apps.conf.ctmpl
    - source: salt://lb/files/nginx-apps.conf.ctmpl
    - makedirs: True
    - mode: '0644'

lb-consul-template-config:
  file.managed:
    - name: {{ lb.paths.config_dir }}/lb.hcl
    - source: salt://lb/files/consul-template.hcl.jinja
    - template: jinja
    - context:
        lb: {{ lb | json }}
    - makedirs: True
    - user: root
    - group: root
    - mode: '0640'

lb-consul-template-unit:
  file.managed:
    - name: /etc/systemd/system/consul-template.service
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard lb).
        [Unit]
        Description=consul-template: nginx virtual hosts from the Consul catalog (saltyard lb)
        After=network-online.target consul.service nginx.service
        Wants=network-online.target

        [Service]
        Environment=SALTYARD_LB_DOMAIN={{ lb.domain }}
        Environment=SALTYARD_LB_LISTEN={{ lb.listen }}
        ExecStart=/usr/local/bin/consul-template -config {{ lb.paths.config_dir }}/lb.hcl
        ExecReload=/bin/kill -HUP $MAINPID
        # consul-template stops on SIGINT (its kill_signal); it passes SIGTERM, systemd's default,
        # on to its commands and keeps running, so every restart waited 90 s for SIGKILL.
        KillSignal=SIGINT
        Restart=always
        RestartSec=3
        NoNewPrivileges=yes
        PrivateTmp=yes

        [Install]
        WantedBy=multi-user.target

consul-template:
  service.running:
    - enable: True
    - require:
      - service: consul
      - service: nginx
      - file: lb-apply-script
      - file: lb-staging-dir
    - watch:
      - file: lb-consul-template-binary
      - archive: lb-consul-template-archive
      - file: lb-consul-template-token
      - file: lb-consul-template-template
      - file: lb-consul-template-config
      - file: lb-consul-template-unit
