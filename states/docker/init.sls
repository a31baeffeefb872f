{%- from 'docker/map.jinja' import docker with context %}
include:
  - base

# Refuse a storage driver other than overlay2, or a data root on XFS with ftype=0 or on a
# filesystem without d_type, before any change (order 1 with failhard stops the whole run).
docker-storage-preflight:
  docker_storage.preflight:
    - name: {{ docker.data_root }}
    - driver: {{ docker.storage_driver | json }}
    - order: 1
    - failhard: True

# Written before the package is installed, so the engine's very first start uses it.
docker-daemon-config:
  file.serialize:
    - name: /etc/docker/daemon.json
    - makedirs: True
    - mode: '0644'
    - serializer: json
    - dataset:
        data-root: {{ docker.data_root }}
        storage-driver: {{ docker.storage_driver }}
        log-driver: {{ docker.log_driver }}
        log-opts: {{ docker.log_opts | json }}
        insecure-registries: {{ docker.insecure_registries | json }}
        live-restore: {{ docker.live_restore | json }}
    - require:
      - docker_storage: docker-storage-preflight

docker-engine:
  pkg.installed:
    - name: {{ docker.package }}
    - install_recommends: False
    - require:
      - file: docker-daemon-config
      # The syslog log driver needs a running syslog before the first container starts.
      - service: rsyslog

docker:
  service.running:
    - enable: True
    - require:
      - pkg: docker-engine
    - watch:
      - file: docker-daemon-config
