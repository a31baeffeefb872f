{#- What both sides of the pipeline need in rsyslog: RELP, and the check of a candidate file
    against the whole configuration before it replaces the live one. -#}
include:
  - base

logging-rsyslog-relp:
  pkg.installed:
    - name: rsyslog-relp
    - install_recommends: False
    - require:
      - pkg: base-packages

logging-rsyslog-check-script:
  file.managed:
    - name: /usr/local/sbin/saltyard-rsyslog-check
    - source: salt://logging/files/saltyard-rsyslog-check.sh
    - mode: '0755'

# One message holds a whole piece of a long line (the engine splits lines at 16 KiB) on every
# hop; set once here, since rsyslog takes each global setting once.
logging-rsyslog-global:
  file.managed:
    - name: /etc/rsyslog.d/10-saltyard-global.conf
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard logging.rsyslog).
        global(maxMessageSize="64k")
    - require:
      - pkg: base-packages
    - watch_in:
      - service: rsyslog
