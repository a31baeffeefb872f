{#- The site (local, example-prod) is chosen in the master configuration: saltyard_site.
    Per-node roles and the cluster's shape come from the inventory ext_pillar, not from here. -#}
{%- set site = opts.get('saltyard_site', 'local') %}
base:
  '*':
    - sites.{{ site }}
