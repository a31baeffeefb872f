{#- Release an application from a git ref to production (docs/release.md):

    salt-run state.orchestrate orch.release pillar='{"app": "hello", "ref": "main", "version": "1.1.0"}'

    One step: the runner saltyard_release.run (_runners/saltyard_release.py) does the release
    under the app's Consul lock, step by step, keeping the record in Consul KV and firing
    saltyard/release/<app>/<step>/<outcome> events (watch: salt-run state.event pretty=True).
    It is one runner call, not one orchestration state per step, because the lock must be held
    by one process for the whole run. The app's release data is this orchestration's pillar
    release:apps:<app> (pillar/release/<app>.sls), so a run's pillar may override it. Run it
    again after a failure or a killed run to continue; `salt-run saltyard_release.status <app>`
    shows where it stands. test=True asks the runner what a run would do and changes nothing.
-#}
{%- set app = salt['pillar.get']('app', '') %}
{%- set ref = salt['pillar.get']('ref', '') %}
{%- set version = salt['pillar.get']('version', '') %}
{%- if not app or not ref or not version %}
{{ raise("orch.release needs app, ref and version: run with pillar='{\"app\": \"hello\", \"ref\": \"<git sha or branch>\", \"version\": \"1.1.0\"}' (got app=" ~ (app | json) ~ ", ref=" ~ (ref | json) ~ ", version=" ~ (version | json) ~ ")") }}
{%- endif %}
{%- set data = salt['pillar.get']('release:apps:' ~ app, none) %}

{%- if opts.get('test') %}
{%- set plan = salt['saltutil.runner']('saltyard_release.plan', app=app, ref=ref, version=version, data=data) %}
{%- if plan.get('Error') %}
{{ raise(plan.Error) }}
{%- endif %}
release-{{ app }}:
  test.show_notification:
    - text: |
        {{ plan.message }}
        {%- for line in plan.steps %}
        - {{ line }}
        {%- endfor %}
{%- else %}
release-{{ app }}:
  salt.runner:
    - name: saltyard_release.run
    - app: {{ app | json }}
    - ref: {{ ref | json }}
    - version: {{ version | json }}
    - data: {{ data | json }}
{%- endif %}
