{%- from 'mesos/map.jinja' import mesos, zk_url with context %}
{%- from 'lib/apt_keyring.jinja' import keyring_states with context %}
{%- if mesos.install_packages %}
{%- set keyring = mesos.package_source.keyring %}
{%- if keyring.source %}
{{ keyring_states('mesos-package-keyring', keyring) }}
{%- endif %}

mesos-package-source:
  pkgrepo.managed:
    - name: {{ mesos.package_source.repo }}
    - file: /etc/apt/sources.list.d/mesos.list
    {%- if keyring.source %}
    - require:
      - apt_keyring: mesos-package-keyring
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
