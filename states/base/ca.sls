{#- The cluster CA (issued on the master, pillar pki:ca) in the system trust store, so registries,
    engines and other TLS services inside the cluster are verified everywhere. The same file is
    what Python clients get as their CA bundle (requests does not read the system store). -#}
{%- set ca = salt['pillar.get']('pki:ca', '') %}
{%- if not ca %}
{{ raise("pillar pki:ca is missing for " ~ grains['id'] ~ ": the master's saltyard_pki ext_pillar serves it to every node") }}
{%- endif %}

ca-certificates:
  pkg.installed:
    - install_recommends: False

saltyard-cluster-ca:
  file.managed:
    - name: /usr/local/share/ca-certificates/saltyard-cluster.crt
    - mode: '0644'
    - contents: {{ ca | json }}
    - require:
      - pkg: ca-certificates

# What update-ca-certificates does, in one process (_modules/ca_store.py says why: the tool's
# forks took 142-166 s of a QEMU node's first highstate).
system-ca-store:
  ca_store.updated:
    - name: system
    - require:
      - file: saltyard-cluster-ca
