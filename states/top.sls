{#- Roles come from pillar saltyard:roles, which the master computes from salt/inventory.yaml for
    the authenticated minion id (_pillar/saltyard_inventory.py); never from grains.
    Without that pillar nothing is applied: a node must not converge without its roles. -#}
{%- if not salt['pillar.get']('saltyard:roles') %}
{{ raise("pillar saltyard:roles is missing for minion " ~ grains['id'] ~ ": the master's inventory ext_pillar did not load (check /var/log/salt/master on the master)") }}
{%- endif %}
base:
  '*':
    - base
    - consul
  'I@saltyard:roles:kernel':
    - match: compound
    - kernel
  'I@saltyard:roles:docker':
    - match: compound
    - docker
  'I@saltyard:roles:registry':
    - match: compound
    - registry
  'I@saltyard:roles:zookeeper':
    - match: compound
    - zookeeper
  'I@saltyard:roles:mesos-master':
    - match: compound
    - mesos.master
  'I@saltyard:roles:mesos-agent':
    - match: compound
    - mesos.agent
    - ipam
  'I@saltyard:roles:discovery':
    - match: compound
    - discovery
  'I@saltyard:roles:marathon':
    - match: compound
    - marathon
  'I@saltyard:roles:lvs':
    - match: compound
    - lvs
  'I@saltyard:roles:lb':
    - match: compound
    - lb
  'I@saltyard:roles:logging':
    - match: compound
    - logging
  'I@saltyard:roles:build':
    - match: compound
    - build
  'I@saltyard:roles:salt-master and I@git_server:enabled:True':
    - match: compound
    - git_server
