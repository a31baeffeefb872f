{#- Mesos agent: one flag per file under /etc/mesos-slave, attributes one file per key.
    Attribute changes under a checkpointed agent are refused (see _states/mesos_agent.py). -#}
{%- from 'mesos/map.jinja' import mesos, me with context %}
include:
  - mesos.package
  - docker

{%- set flags = {
    'containerizers': mesos.agent.containerizers,
    'executor_registration_timeout': mesos.agent.executor_registration_timeout,
    'work_dir': mesos.work_dir,
    'hostname': me.name,
    'ip': me.address,
    'port': mesos.agent.port,
} %}
{%- if 'default_role' in mesos.agent.flags %}
{{ raise("pillar mesos:agent:flags:default_role: reserve an agent for a role with the node's mesos_role in the inventory (the mesos_agent.reservation state guards it like the attributes)") }}
{%- endif %}
{%- do flags.update(mesos.agent.flags) %}
{%- set attributes = {'env': me.env} %}
{%- do attributes.update(mesos.agent.attributes) %}

# Runs first (order 1): a refused attribute change stops the whole run before anything changes.
mesos-agent-attributes:
  mesos_agent.attributes:
    - name: /etc/mesos-slave/attributes
    - attributes: {{ attributes | json }}
    - work_dir: {{ mesos.work_dir }}
    - reset: {{ mesos.agent.reset_for_attribute_change | json }}
    - order: 1
    - failhard: True
    {%- if mesos.install_packages %}
    - watch_in:
      - service: mesos-slave
    {%- endif %}

# The role the agent's resources are reserved for (inventory: the node's mesos_role; Mesos's
# --default_role), part of its checkpointed identity like the attributes: order 1 as well.
mesos-agent-reservation:
  mesos_agent.reservation:
    - name: /etc/mesos-slave/default_role
    - role: {{ me.get('mesos_role') | json }}
    - work_dir: {{ mesos.work_dir }}
    - reset: {{ mesos.agent.reset_for_attribute_change | json }}
    - order: 1
    - failhard: True
    {%- if mesos.install_packages %}
    - watch_in:
      - service: mesos-slave
    {%- endif %}

{%- for flag, value in flags | dictsort %}
mesos-agent-flag-{{ flag }}:
  file.managed:
    - name: /etc/mesos-slave/{{ flag }}
    - makedirs: True
    - mode: '0644'
    - contents: '{{ value }}'
    {%- if mesos.install_packages %}
    - watch_in:
      - service: mesos-slave
    {%- endif %}
{%- endfor %}

{%- if mesos.install_packages %}
mesos-slave:
  service.running:
    - enable: True
    - require:
      - pkg: mesos-package
      - service: docker
{%- endif %}
