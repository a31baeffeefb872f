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

update-ca-certificates:
  cmd.run:
    - name: update-ca-certificates
    - onchanges:
      - file: saltyard-cluster-ca
