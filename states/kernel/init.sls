{#- Refuse a kernel older than pillar kernel:min_version (kernel/defaults.yaml), before any other
    state runs (order 1 with failhard: a failure stops the whole run). -#}
{%- from 'kernel/map.jinja' import kernel with context %}
kernel-min-version:
  kernel_check.min_version:
    - name: {{ kernel.min_version | string | json }}
    - order: 1
    - failhard: True
