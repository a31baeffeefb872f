{#- Drain a Mesos agent, reset it for an attribute change, and bring it back.

    salt-run state.orchestrate orch.mesos_agent_reset pillar='{"agent": "agent-fat"}'

    The mesos.agent state refuses to change the attributes of an agent that has checkpointed
    its agent info (Mesos would refuse to start it). This run: drains the agent through Mesos
    maintenance (Marathon moves its tasks), applies mesos.agent with the reset flag (removes the
    checkpoint, writes the new attributes), restarts the agent, re-applies the scheduler's role on
    the operator node, brings the agent up, and verifies that mesos.agent has nothing left to do
    (a test-mode run that fails on any predicted change: mesos_agent.converged).
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

drain:
  salt.function:
    - name: mesos.drain
    - tgt: {{ operator }}
    - arg:
      - {{ agent }}
    - kwarg:
        timeout: 300

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
