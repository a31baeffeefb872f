{#- Upgrade the kernel of the target nodes, one at a time (docs/kernel.md):

    salt-run state.orchestrate orch.kernel_rollout pillar='{"targets": ["lvs1"]}'
    salt-run state.orchestrate orch.kernel_rollout pillar='{"targets": ["lvs1"]}' test=True

    One step: the runner saltyard_kernel.rollout (_runners/saltyard_kernel.py) checks each
    target against its pillar kernel:boot:release (nodes already on it, and containers, are
    skipped), plans every upgrade with the kernel state in test mode (a refusal stops the run
    before anything changes), then for each node in turn: drains it (Mesos agents, mesos.drain),
    applies kernel, reboots it, waits for its minion (reboot_timeout), verifies the running
    kernel and the docker preflight, runs the highstate and brings the agent up. The first
    failure stops the run, naming the node, the step and why. One runner call, not one
    orchestration state per node, because the run stops at the first failure and a failed node's
    reboot must not be followed by the next node's drain. Events per node and step:
    saltyard/kernel/<node>/<step>/<outcome> (salt-run state.event pretty=True).

    Pillar of the run: targets (node names, in order), reboot_timeout (seconds, default 600),
    drain_timeout (per task moved, default 300), accept_downtime (false; true lets the drain
    stop tasks that have nowhere else to go), kernel_rollout:kernel ({package, release}: this
    kernel instead of the nodes' pillar kernel:boot; not under `kernel`, the kernel role's own
    key).
-#}
{%- set targets = salt['pillar.get']('targets', []) %}
{%- set args = {
      'targets': targets,
      'reboot_timeout': salt['pillar.get']('reboot_timeout', 600),
      'drain_timeout': salt['pillar.get']('drain_timeout', 300),
      'accept_downtime': salt['pillar.get']('accept_downtime', False),
      'kernel': salt['pillar.get']('kernel_rollout:kernel', none),
    } %}
{%- if opts.get('test') %}
{%- set plan = salt['saltutil.runner']('saltyard_kernel.rollout', test=True, **args) %}
{%- if plan.get('Error') %}
{{ raise(plan.Error) }}
{%- endif %}
kernel-rollout:
  test.show_notification:
    - text: |
        {{ plan.comment }}
        {%- for node, report in plan.nodes | dictsort %}
        - {{ node }}: {{ report.outcome }} {{ report.steps | json }}
        {%- endfor %}
{%- else %}
kernel-rollout:
  salt.runner:
    - name: saltyard_kernel.rollout
    - targets: {{ targets | json }}
    - reboot_timeout: {{ args.reboot_timeout | json }}
    - drain_timeout: {{ args.drain_timeout | json }}
    - accept_downtime: {{ args.accept_downtime | json }}
    - kernel: {{ args.kernel | json }}
{%- endif %}
