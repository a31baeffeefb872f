{#- Refuse a kernel older than pillar kernel:min_version, before any other state runs
    (order 1 with failhard: a failure stops the whole run). -#}
{%- set min_version = salt['pillar.get']('kernel:min_version', '4.4.27') %}
kernel-min-version:
  kernel_check.min_version:
    - name: '{{ min_version }}'
    - order: 1
    - failhard: True
