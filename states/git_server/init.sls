{#- A read-only git server on the salt-master node: `git daemon` serving <base_path>/<name>.git
    at git://<node address>/<name>.git, from which the build node clones what it releases.
    Each repository in pillar git_server:repositories gets the files of its seed directory as a
    first commit on main, once, while it has none; later commits are pushed to it by whoever
    owns the application (in the local cluster: the tests, from the master). git daemon only
    serves repositories that carry git-daemon-export-ok, and never accepts a push. -#}
{%- from 'git_server/map.jinja' import git_server with context %}
{%- set address = salt['pillar.get']('saltyard:node:address') %}
{%- set seeds = '/var/lib/saltyard/git-seed' %}

git-server-package:
  pkg.installed:
    - name: git

git-server-user:
  user.present:
    - name: {{ git_server.user }}
    - system: True
    - home: {{ git_server.base_path }}
    - createhome: False
    - shell: /usr/sbin/nologin

{#- The repositories belong to the daemon's user: git refuses to serve a repository that another
    user owns ("dubious ownership"). #}
git-server-root:
  file.directory:
    - name: {{ git_server.base_path }}
    - user: {{ git_server.user }}
    - group: {{ git_server.user }}
    - mode: '0755'
    - require:
      - user: git-server-user

{%- for name, repo in git_server.repositories | dictsort %}
{%- set path = git_server.base_path ~ '/' ~ name ~ '.git' %}

git-server-seed-{{ name }}:
  file.recurse:
    - name: {{ seeds }}/{{ name }}
    - source: salt://{{ repo.seed }}
    - clean: True
    - exclude_pat: E@(__pycache__|\.pyc$)
    - dir_mode: '0755'
    - file_mode: keep
    - makedirs: True

git-server-repository-{{ name }}:
  cmd.run:
    - name: |
        set -eu
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        git init --quiet --bare --initial-branch=main {{ path }}
        git -C "$work" init --quiet --initial-branch=main
        cp -R {{ seeds }}/{{ name }}/. "$work"/
        git -C "$work" add --all
        git -C "$work" -c user.name=saltyard -c user.email=saltyard@{{ grains['id'] }} \
            commit --quiet -m "{{ name }}: first commit, from {{ repo.seed }}"
        git -C "$work" push --quiet {{ path }} main
        touch {{ path }}/git-daemon-export-ok
    - runas: {{ git_server.user }}
    - unless: git --git-dir={{ path }} rev-parse --verify --quiet refs/heads/main
    - require:
      - pkg: git-server-package
      - file: git-server-root
      - file: git-server-seed-{{ name }}
{%- endfor %}

git-server-unit:
  file.managed:
    - name: /etc/systemd/system/saltyard-git.service
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard git_server).
        [Unit]
        Description=saltyard git server (read-only git daemon)
        After=network-online.target
        Wants=network-online.target

        [Service]
        User={{ git_server.user }}
        ExecStart=/usr/bin/git daemon --reuseaddr --listen={{ address }} --port={{ git_server.port }} --base-path={{ git_server.base_path }} {{ git_server.base_path }}
        Restart=always
        RestartSec=3

        [Install]
        WantedBy=multi-user.target

saltyard-git:
  service.running:
    - enable: True
    - require:
      - pkg: git-server-package
      - file: git-server-root
    - watch:
      - file: git-server-unit
