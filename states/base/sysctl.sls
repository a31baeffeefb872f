{%- from 'base/map.jinja' import base with context %}
{%- set in_container = grains.get('virtual') == 'container' %}
{%- for key, value in base.sysctl | dictsort %}
{%- if in_container and not key.startswith('net.') %}
{{ raise("pillar base:sysctl:" ~ key ~ ": this node is a container, which shares the host's kernel; only namespaced net.* keys may be set here") }}
{%- endif %}
sysctl-{{ key }}:
  sysctl.present:
    - name: {{ key }}
    - value: {{ value }}
    - config: /etc/sysctl.d/60-saltyard.conf
{%- endfor %}
