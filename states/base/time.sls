{%- from 'base/map.jinja' import base with context %}
{%- set me = salt['pillar.get']('saltyard:node:name', grains['id']) %}
{%- set t = base.time %}
{%- set is_server = me in t.servers %}
{%- set sources = t.upstream if is_server else t.servers %}
chrony-config:
  file.managed:
    - name: /etc/chrony/chrony.conf
    - mode: '0644'
    - require:
      - pkg: base-packages
    - contents: |
        # Managed by Salt (saltyard base.time).
        {%- for source in sources %}
        server {{ source }} iburst
        {%- endfor %}
        {%- if is_server %}
        {%- for net in t.serve_networks %}
        allow {{ net }}
        {%- endfor %}
        {%- if not t.upstream %}
        # No upstream: this node serves its own clock to the cluster.
        local stratum 10
        {%- endif %}
        {%- endif %}
        driftfile /var/lib/chrony/chrony.drift
        {%- if t.set_clock %}
        makestep 1 3
        rtcsync
        {%- endif %}

chrony-options:
  file.managed:
    - name: /etc/default/chrony
    - mode: '0644'
    - require:
      - pkg: base-packages
    - contents: |
        # Managed by Salt (saltyard base.time).
        {%- if t.set_clock %}
        DAEMON_OPTS="-F 1"
        {%- else %}
        # -x: never adjust the system clock (it belongs to the host).
        DAEMON_OPTS="-F 1 -x"
        {%- endif %}

chrony:
  service.running:
    - enable: True
    - watch:
      - file: chrony-config
      - file: chrony-options
