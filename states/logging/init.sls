{#- The log node: rsyslog receives every node's container lines over RELP and writes them to
    hourly spool files; Apache Flume follows those files (TAILDIR, positions kept), holds the
    lines in a durable file channel and writes them out by env, app and day (or to Kafka/HDFS,
    from pillar). docs/logging.md has the pipeline and each hop's guarantee. -#}
{%- from 'logging/map.jinja' import logging, flume_group with context %}
{%- set flume = logging.flume %}
{%- set agent = salt['pillar.get']('saltyard:node:name', grains['id']) | replace('-', '_') %}
{%- if not flume.source %}
{{ raise("pillar logging:flume:source is empty: the Flume distribution built by scripts/build-flume.sh (salt://artifacts/... in the local cluster, a URL with its source_hash in production)") }}
{%- endif %}
{%- if not flume.source.startswith('salt://') and not flume.source_hash %}
{{ raise("pillar logging:flume:source_hash is empty for " ~ flume.source ~ ": a download is verified against its sha256") }}
{%- endif %}
{#- The directory is named by the archive's hash too: a rebuilt distribution (saltyard's plugin
    changed, the Flume version not) is a new directory, and the agent restarts into it. #}
{%- if flume.source.startswith('salt://') %}
{%-   set archive_hash = salt['cp.hash_file'](flume.source).get('hsum', '') %}
{%- else %}
{%-   set archive_hash = flume.source_hash.split('=')[-1] %}
{%- endif %}
{%- if not archive_hash %}
{{ raise("pillar logging:flume:source " ~ flume.source ~ " is not on the master (scripts/build-flume.sh makes it)") }}
{%- endif %}
{%- set home = flume.install_dir ~ '/' ~ flume.version ~ '-' ~ archive_hash[:12] %}
{%- set java_cp = home ~ '/lib/*' %}
include:
  - logging.rsyslog

logging-java:
  pkg.installed:
    - name: {{ flume.java_package }}
    - install_recommends: False

logging-flume-user:
  user.present:
    - name: flume
    - system: True
    - home: {{ flume.state_dir }}
    - createhome: False
    - shell: /usr/sbin/nologin

{%- for dir, owner, mode in [(flume.state_dir, 'flume', '0750'), (flume.config_dir, 'root', '0755'), (logging.spool_dir, 'root', '0750')] %}
logging-dir-{{ dir }}:
  file.directory:
    - name: {{ dir }}
    - user: {{ owner }}
    - group: {{ flume_group }}
    - mode: '{{ mode }}'
    - makedirs: True
    - require:
      - user: logging-flume-user
{%- endfor %}
{%- if flume.sink.type == 'files' %}
logging-dir-{{ flume.sink.directory }}:
  file.directory:
    - name: {{ flume.sink.directory }}
    - user: flume
    - group: {{ flume_group }}
    - mode: '0755'
    - makedirs: True
    - require:
      - user: logging-flume-user
{%- endif %}

# --- rsyslog: RELP in, spool files out -----------------------------------------------------------
logging-rsyslog-config:
  file.managed:
    - name: /etc/rsyslog.d/40-saltyard-log-node.conf
    - source: salt://logging/files/rsyslog-log-node.conf.jinja
    - template: jinja
    - context:
        logging: {{ logging | json }}
        flume_group: {{ flume_group }}
    - mode: '0644'
    - check_cmd: /usr/local/sbin/saltyard-rsyslog-check /etc/rsyslog.d/40-saltyard-log-node.conf
    - require:
      - pkg: logging-rsyslog-relp
      - file: logging-rsyslog-check-script
      - file: logging-rsyslog-global
      - file: logging-dir-{{ logging.spool_dir }}
    - watch_in:
      - service: rsyslog

# Spool files older than spool_keep_hours go, hourly (Flume reads a file within seconds of a
# line being written; applog.stats shows the unread bytes if it ever falls behind).
logging-spool-cleanup-units:
  file.managed:
    - name: /etc/systemd/system/saltyard-spool-cleanup.service
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard logging).
        [Unit]
        Description=Remove spool files older than {{ logging.spool_keep_hours }} h (saltyard logging)

        [Service]
        Type=oneshot
        ExecStart=/usr/bin/find {{ logging.spool_dir }} -maxdepth 1 -name 'apps-*.log' -mmin +{{ logging.spool_keep_hours * 60 }} -delete

logging-spool-cleanup-timer-unit:
  file.managed:
    - name: /etc/systemd/system/saltyard-spool-cleanup.timer
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard logging).
        [Unit]
        Description=Hourly removal of old spool files (saltyard logging)

        [Timer]
        OnCalendar=hourly
        Persistent=true

        [Install]
        WantedBy=timers.target

saltyard-spool-cleanup.timer:
  service.running:
    - enable: True
    - watch:
      - file: logging-spool-cleanup-units
      - file: logging-spool-cleanup-timer-unit

# --- Flume ----------------------------------------------------------------------------------
# The distribution (Flume's jars and saltyard's plugin) under a versioned directory: a converged
# node skips the download (if_missing), a new version is a new directory.
logging-flume-archive:
  archive.extracted:
    - name: {{ home }}
    - if_missing: {{ home }}/lib
    - source: {{ flume.source }}
    {%- if flume.source_hash %}
    - source_hash: {{ flume.source_hash }}
    {%- endif %}
    - enforce_toplevel: False
    - trim_output: True

logging-flume-log4j:
  file.managed:
    - name: {{ flume.config_dir }}/log4j2.xml
    - source: salt://logging/files/log4j2.xml
    - mode: '0644'
    - require:
      - file: logging-dir-{{ flume.config_dir }}

# Checked by Flume's own loader (io.saltyard.flume.CheckConfig, as the flume user) before it
# replaces the live file: a configuration Flume would drop a component of is refused, and the
# running agent keeps the last good one.
logging-flume-config:
  file.managed:
    - name: {{ flume.config_dir }}/flume.conf
    - contents: {{ salt['applog.flume_config'](agent, logging) | json }}
    - mode: '0644'
    - check_cmd: /usr/sbin/runuser -u flume -- /usr/bin/java -cp '{{ java_cp }}' io.saltyard.flume.CheckConfig -n {{ agent }} -f
    - require:
      - pkg: logging-java
      - archive: logging-flume-archive
      - file: logging-dir-{{ flume.config_dir }}

logging-flume-unit:
  file.managed:
    - name: /etc/systemd/system/saltyard-flume.service
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard logging).
        [Unit]
        Description=Apache Flume {{ flume.version }}: container lines from the spool to the sink (saltyard logging)
        After=network-online.target rsyslog.service
        Wants=network-online.target

        [Service]
        User=flume
        Group={{ flume_group }}
        WorkingDirectory={{ flume.state_dir }}
        # --no-reload-conf: Salt restarts the agent after a checked change; Flume's own reload
        # would pick up a file half-way or one that was never checked.
        ExecStart=/usr/bin/java -Xms{{ flume.heap_mb }}m -Xmx{{ flume.heap_mb }}m \
          -Dlog4j.configurationFile={{ flume.config_dir }}/log4j2.xml \
          -Dflume.monitoring.type=http -Dflume.monitoring.port={{ flume.monitoring_port }} \
          -cp '{{ java_cp }}' org.apache.flume.node.Application \
          --no-reload-conf -n {{ agent }} -f {{ flume.config_dir }}/flume.conf
        # Flume commits what it has taken and stops its components on SIGTERM.
        TimeoutStopSec=60
        Restart=always
        RestartSec=3
        LimitNOFILE=65536

        [Install]
        WantedBy=multi-user.target

saltyard-flume:
  service.running:
    - enable: True
    - require:
      - file: logging-dir-{{ flume.state_dir }}
      - service: rsyslog
    - watch:
      - archive: logging-flume-archive
      - file: logging-flume-log4j
      - file: logging-flume-config
      - file: logging-flume-unit
