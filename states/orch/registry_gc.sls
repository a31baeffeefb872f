{#- Garbage-collect the registry pair's shared storage while pulls keep working.

    salt-run state.orchestrate orch.registry_gc

    distribution's garbage collector is not safe against concurrent pushes, and the two
    registries share one storage, so a push to either during the mark phase could lose blobs.
    Hence: each registry in turn goes read-only (it keeps serving pulls; pushes are refused),
    the first one collects, then each in turn goes back to read-write. If collecting fails, the
    `restore-*` steps (onfail) put the registries back to read-write all the same, and the run
    reports the failure (tests/convergence/test_registry_gc.py makes a collection fail).

    A flip restarts the registry. Before the next registry flips, a readiness gate waits until the
    flipped one answers its health check (from the director, as keepalived checks it) and every
    director of the VIP lists it in its IPVS table with a weight above 0 (ipvs.wait_for_server):
    two registries restarting at once would leave the VIP with no real server. Without a VIP there
    is no director and no gate; the registry state itself waits for the service to start.
-#}
{%- set registries = salt['pillar.get']('saltyard:members:registry', []) %}
{%- if not registries %}
{{ raise("the inventory has no registry node") }}
{%- endif %}
{%- set collector = registries[0].name %}
{%- set config = salt['pillar.get']('registry:config_dir', '/etc/docker/registry') ~ '/config.yml' %}
{%- set port = salt['pillar.get']('registry:port', 5000) %}
{%- set debug_port = salt['pillar.get']('registry:debug_port', 5001) %}
{%- set vip = salt['pillar.get']('registry:vip:address', '') %}
{%- set directors = salt['pillar.get']('saltyard:members:lvs', []) | map(attribute='name') | list if vip else [] %}
{%- set timeout = salt['pillar.get']('registry_gc:ready_timeout', 120) %}

{#- One registry flipped to the phase's read_only value, then its readiness gate. `requisites`:
    the requisite lines of the flip (the gate of the registry flipped before it, or the step the
    phase starts from). `only_on_failure`: the restore phase, whose every step runs only when the
    collection failed (without it, the gates of a skipped restore would still wait). #}
{%- macro flip(phase, node, read_only, requisites, only_on_failure=False) %}
{{ phase }}-{{ node.name }}:
  salt.state:
    - tgt: {{ node.name }}
    - sls:
      - registry
    {%- if read_only %}
    - pillar:
        registry:
          read_only: True
    {%- endif %}
    {%- for kind, step in requisites %}
    - {{ kind }}:
      - {{ step }}
    {%- endfor %}
{%- for director in directors %}

ready-{{ phase }}-{{ node.name }}-on-{{ director }}:
  salt.function:
    - name: ipvs.wait_for_server
    - tgt: {{ director }}
    - arg:
      - {{ vip }}
      - {{ port }}
      - {{ node.address }}
    - kwarg:
        health_url: http://{{ node.address }}:{{ debug_port }}/debug/health
        timeout: {{ timeout }}
    - require:
      - salt: {{ phase }}-{{ node.name }}
    - require_in:
      - test: ready-{{ phase }}-{{ node.name }}
    {%- if only_on_failure %}
    - onfail:
      - salt: collect
    {%- endif %}
{%- endfor %}

ready-{{ phase }}-{{ node.name }}:
  test.nop:
    - require:
      - salt: {{ phase }}-{{ node.name }}
    {%- if only_on_failure %}
    - onfail:
      - salt: collect
    {%- endif %}
{%- endmacro %}

{%- for node in registries %}
{%-   set after = [] if loop.first else [('require', 'test: ready-read-only-' ~ loop.previtem.name)] %}
{{ flip('read-only', node, True, after) }}
{%- endfor %}

collect:
  salt.function:
    - name: cmd.run
    - tgt: {{ collector }}
    - arg:
      - docker-registry garbage-collect {{ config }}
    - kwarg:
        runas: docker-registry
        python_shell: False
    - require:
      - test: ready-read-only-{{ (registries | last).name }}

{#- Back to read-write in turn: after a collection (require), or after a failed one (onfail). #}
{%- for node in registries %}
{%-   set after = [('require', 'salt: collect')] if loop.first else [('require', 'test: ready-read-write-' ~ loop.previtem.name)] %}
{{ flip('read-write', node, False, after) }}
{%- endfor %}
{%- for node in registries %}
{%-   set after = [('onfail', 'salt: collect')] + ([] if loop.first else [('require', 'test: ready-restore-' ~ loop.previtem.name)]) %}
{{ flip('restore', node, False, after, only_on_failure=True) }}
{%- endfor %}
