{#- Garbage-collect the registry pair's shared storage while pulls keep working.

    salt-run state.orchestrate orch.registry_gc

    distribution's garbage collector is not safe against concurrent pushes, and the two
    registries share one storage, so a push to either during the mark phase could lose blobs.
    Hence: each registry in turn goes read-only (it keeps serving pulls; pushes are refused),
    the first one collects, then each in turn goes back to read-write. If collecting fails, the
    registries still go back to read-write and the run reports the failure.
-#}
{%- set registries = salt['pillar.get']('saltyard:members:registry', []) | map(attribute='name') | list %}
{%- if not registries %}
{{ raise("the inventory has no registry node") }}
{%- endif %}
{%- set collector = registries[0] %}
{%- set config = salt['pillar.get']('registry:config_dir', '/etc/docker/registry') ~ '/config.yml' %}

{%- for node in registries %}
read-only-{{ node }}:
  salt.state:
    - tgt: {{ node }}
    - sls:
      - registry
    - pillar:
        registry:
          read_only: True
    {%- if not loop.first %}
    - require:
      - salt: read-only-{{ loop.previtem }}
    {%- endif %}
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
      - salt: read-only-{{ registries | last }}

{%- for node in registries %}
{%- for when in ['require', 'onfail'] %}
{{ 'read-write' if when == 'require' else 'restore' }}-{{ node }}:
  salt.state:
    - tgt: {{ node }}
    - sls:
      - registry
    - {{ when }}:
      - salt: collect
{%- endfor %}
{%- endfor %}
