{%- from 'base/map.jinja' import base with context %}
{%- if base.rsyslog.forward_to %}
/etc/rsyslog.d/60-saltyard-forward.conf:
  file.managed:
    - mode: '0644'
    - require:
      - pkg: base-packages
    - watch_in:
      - service: rsyslog
    - contents: |
        # Managed by Salt (saltyard base.rsyslog): forward everything to the log node.
        *.* action(type="omfwd" target="{{ base.rsyslog.forward_to }}" port="514" protocol="tcp"
                   queue.type="LinkedList" queue.filename="forward" action.resumeRetryCount="-1")
{%- endif %}

rsyslog:
  service.running:
    - enable: True
    - require:
      - pkg: base-packages
