{#- ACL policies and the role tokens, registered once by the first consul-server (the tokens'
    SecretIDs are generated on the master; salt/consul/policies/ holds the rules). -#}
{%- from 'consul/map.jinja' import consul with context %}
{%- import_text 'salt/consul/policies/agent.hcl' as agent_rules %}
{%- import_text 'salt/consul/policies/bridge.hcl' as bridge_rules %}
{%- import_text 'salt/consul/policies/lb.hcl' as lb_rules %}
{%- import_text 'salt/consul/policies/release.hcl' as release_rules %}
{%- import_text 'salt/consul/policies/ipam.hcl' as ipam_rules %}
{%- import_text 'salt/consul/policies/ipam-read.hcl' as ipam_read_rules %}
{%- set policies = {'agent': agent_rules, 'bridge': bridge_rules, 'lb': lb_rules, 'release': release_rules, 'ipam': ipam_rules, 'ipam-read': ipam_read_rules} %}
{#- token name (pillar consul:acl:tokens:<name>) -> its policies #}
{%- set tokens = {'agent': ['agent'], 'discovery': ['bridge'], 'lb': ['lb'], 'release': ['release'], 'ipam': ['ipam'], 'ipam_read': ['ipam-read']} %}

consul-leader:
  consul_acl.leader:
    - timeout: {{ consul.leader_timeout }}
    - require:
      - service: consul

{%- for name, rules in policies | dictsort %}
consul-policy-{{ name }}:
  consul_acl.policy_present:
    - name: {{ name }}
    - rules: {{ rules | json }}
    - description: saltyard (salt/consul/policies/{{ name }}.hcl)
    - require:
      - consul_acl: consul-leader
{%- endfor %}

{%- for name, linked in tokens | dictsort %}
{%- set secret = consul.acl.get('tokens', {}).get(name) %}
{%- if not secret %}
{{ raise("pillar consul:acl:tokens:" ~ name ~ " is empty on the first consul-server, which registers it") }}
{%- endif %}
consul-token-{{ name }}:
  consul_acl.token_present:
    - name: {{ name }}
    - secret_id: {{ secret | json }}
    - policies: {{ linked | json }}
    - description: saltyard role token {{ name }}
    - require:
      {%- for policy in linked %}
      - consul_acl: consul-policy-{{ policy }}
      {%- endfor %}
{%- endfor %}
