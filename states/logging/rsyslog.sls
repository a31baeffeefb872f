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
