{#- Drain a Mesos agent, reset it for an attribute change, and bring it back.

    salt-run state.orchestrate orch.mesos_agent_reset pillar='{"agent": "agent-fat"}'
    salt-run state.orchestrate orch.mesos_agent_reset \
        pillar='{"agent": "agent-fat", "accept_downtime": true}'

    The mesos.agent state refuses to change the attributes of an agent that has checkpointed
    its agent info (Mesos would refuse to start it). This run: drains the agent (mesos.drain:
    maintenance scheduled, its tasks moved to other agents one at a time without going below
    each app's healthy capacity, then the machine DOWN), applies mesos.agent with the reset flag
    (removes the checkpoint, writes the new attributes), restarts the agent, re-applies the
    scheduler's role on the operator node, brings the agent up, and verifies that mesos.agent has
    nothing left to do (a test-mode run that fails on any predicted change: mesos_agent.converged).

    When some app on the agent has nowhere else to go (the only agent of its env, a constraint no
    other agent meets), the drain step fails naming the apps, before anything changed, and the
    run stops there. Pillar accept_downtime: true, for this run only, lets the drain stop those
    apps' tasks instead (they come back when the agent is up). Pillar drain_timeout bounds each
    task's move (seconds, default 300).
-#}
{%- set agent = salt['pillar.get']('agent', '') %}
{%- set agents = salt['pillar.get']('saltyard:members:mesos-agent', []) | map(attribute='name') | list %}
{%- if agent not in agents %}
{{ raise("pillar agent=" ~ (agent | json) ~ " is not a mesos-agent in the inventory (agents: " ~ (agents | join(', ')) ~ "); run with pillar='{\"agent\": \"NAME\"}'") }}
{%- endif %}
{%- set operators = salt['pillar.get']('saltyard:members:marathon', []) %}
{%- if not operators %}
{{ raise("the inventory has no marathon node to drain through") }}
{%- endif %}
{%- set operator = operators[0].name %}
{%- set install_packages = salt['pillar.get']('mesos:install_packages', True) %}
{%- set accept_downtime = salt['pillar.get']('accept_downtime', False) %}
{%- if accept_downtime not in (True, False) %}
{{ raise("pillar accept_downtime=" ~ (accept_downtime | json) ~ " must be true or false") }}
{%- endif %}
{%- set drain_timeout = salt['pillar.get']('drain_timeout', 300) %}

drain:
  salt.function:
    - name: mesos.drain
    - tgt: {{ operator }}
    - arg:
      - {{ agent }}
    - kwarg:
        accept_downtime: {{ accept_downtime | json }}
        timeout: {{ drain_timeout | json }}

reset:
  salt.state:
    - tgt: {{ agent }}
    - sls:
      - mesos.agent
    - pillar:
        mesos:
          agent:
            reset_for_attribute_change: True
    - require:
      - salt: drain

{%- if install_packages %}
restart-agent:
  salt.function:
    - name: service.restart
    - tgt: {{ agent }}
    - arg:
      - mesos-slave
    - require:
      - salt: reset
    - require_in:
      - salt: scheduler
{%- endif %}

# The scheduler side learns the new attributes (in the local cluster: the emulator's agent list).
scheduler:
  salt.state:
    - tgt: {{ operator }}
    - sls:
      - marathon
    - require:
      - salt: reset

up:
  salt.function:
    - name: mesos.up
    - tgt: {{ operator }}
    - arg:
      - {{ agent }}
    - require:
      - salt: scheduler

# Converged: mesos.agent without the reset flag, in test mode, predicts no change. Not a
# salt.state step: with test: True it succeeds whatever it predicts, and a real apply would make
# the change it should report. mesos_agent.converged (_modules/mesos_agent.py) runs the test-mode
# run on the agent and raises, naming the states, on any predicted change or failure; the
# minion's non-zero retcode fails this step and the orchestration.
verify:
  salt.function:
    - name: mesos_agent.converged
    - tgt: {{ agent }}
    - require:
      - salt: up
