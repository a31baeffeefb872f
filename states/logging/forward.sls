{#- Every Docker node: its engine's container lines into this node's rsyslog, and from there to
    the log node over RELP with a disk-assisted queue (docs/logging.md). The docker role includes
    this: the engine's log-opts name the socket made here. -#}
{%- from 'logging/map.jinja' import logging, log_node, env with context %}
include:
  - logging.rsyslog

# systemd owns the socket, so it outlives an rsyslog restart: the engine's writes wait in it
# (up to its receive buffer) instead of failing, and no line is dropped (docs/logging.md).
logging-container-socket-unit:
  file.managed:
    - name: /etc/systemd/system/saltyard-container-log.socket
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard logging.forward).
        [Unit]
        Description=Container log lines for rsyslog (saltyard logging)
        Before=sockets.target docker.service

        [Socket]
        ListenDatagram={{ logging.container_socket }}
        SocketMode=0600
        ReceiveBuffer=8M
        Service=rsyslog.service

        [Install]
        WantedBy=sockets.target
    - watch_in:
      - service: rsyslog

# rsyslog takes the socket from systemd (imuxsock matches the passed descriptor by path).
logging-rsyslog-sockets:
  file.managed:
    - name: /etc/systemd/system/rsyslog.service.d/saltyard-container-log.conf
    - makedirs: True
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard logging.forward).
        [Unit]
        Requires=saltyard-container-log.socket
        After=saltyard-container-log.socket

        [Service]
        Sockets=syslog.socket saltyard-container-log.socket
    - watch_in:
      - service: rsyslog

# Enabled, not started here: systemd refuses to start a socket whose service runs already, so
# the socket comes up when rsyslog restarts (its drop-in Requires= it), which the unit files'
# changes trigger.
logging-container-socket:
  service.enabled:
    - name: saltyard-container-log.socket
    - require:
      - file: logging-container-socket-unit
    - watch_in:
      - service: rsyslog

logging-forward-config:
  file.managed:
    - name: /etc/rsyslog.d/40-saltyard-containers.conf
    - source: salt://logging/files/rsyslog-containers.conf.jinja
    - template: jinja
    - context:
        logging: {{ logging | json }}
        log_node: {{ log_node | json }}
        env: {{ env | json }}
    - mode: '0644'
    - check_cmd: /usr/local/sbin/saltyard-rsyslog-check /etc/rsyslog.d/40-saltyard-containers.conf
    - require:
      - pkg: logging-rsyslog-relp
      - file: logging-rsyslog-check-script
      - file: logging-rsyslog-global
    - watch_in:
      - service: rsyslog
