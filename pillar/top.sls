{#- The site (local, example-prod) is chosen in the master configuration: saltyard_site.
    Per-node roles and the cluster's shape come from the inventory ext_pillar, not from here. -#}
{%- set site = opts.get('saltyard_site', 'local') %}
{#- The master's own minion id (the bootstrap writes it into the master configuration). -#}
{%- set master = opts.get('saltyard_master_id', '') %}
base:
  '*':
    - sites.{{ site }}
{%- if site == 'local' and master %}
  {#- Release data (one file per app under release/) only for the salt-master node and for the
      orchestration runs on it: salt-run compiles pillar for "<master id>_master". A top file
      cannot match on the inventory's roles (ext_pillar comes after it), hence the ids. #}
  '{{ master }},{{ master }}_master':
    - match: list
    - release.hello
{%- endif %}
