{%- from 'mesos/map.jinja' import mesos, zk_url with context %}
{%- if mesos.install_packages %}
mesos-package-source:
  pkgrepo.managed:
    - name: {{ mesos.package_source.repo }}
    - file: /etc/apt/sources.list.d/mesos.list
    {%- if mesos.package_source.get('key_url') %}
    - key_url: {{ mesos.package_source.key_url }}
    {%- endif %}

mesos-package:
  pkg.installed:
    - name: {{ mesos.package }}
    - require:
      - pkgrepo: mesos-package-source
{%- endif %}

/etc/mesos/zk:
  file.managed:
    - makedirs: True
    - mode: '0644'
    - contents: {{ zk_url }}
