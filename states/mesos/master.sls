{#- Mesos master: one flag per file under /etc/mesos-master (Mesosphere packaging). -#}
{%- from 'mesos/map.jinja' import mesos, quorum, me with context %}
include:
  - mesos.package

{%- set flags = {
    'quorum': quorum,
    'work_dir': mesos.work_dir,
    'hostname': me.name,
    'ip': me.address,
    'port': mesos.master.port,
    'cluster': salt['pillar.get']('saltyard:cluster:name'),
} %}
{%- do flags.update(mesos.master.flags) %}
{%- for flag, value in flags | dictsort %}
mesos-master-flag-{{ flag }}:
  file.managed:
    - name: /etc/mesos-master/{{ flag }}
    - makedirs: True
    - mode: '0644'
    - contents: '{{ value }}'
    {%- if mesos.install_packages %}
    - watch_in:
      - service: mesos-master
    {%- endif %}
{%- endfor %}

{%- if mesos.install_packages %}
mesos-master:
  service.running:
    - enable: True
    - require:
      - pkg: mesos-package
{%- endif %}
