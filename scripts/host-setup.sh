#!/usr/bin/env bash
# Prepare this machine (Debian 12, root) for the local cluster: Debian packages, a Docker engine
# running in the background, and the project's Python venv. Safe to run again: each step checks
# first and says what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[host-setup] %s\n' "$*" >&2; }

# docker.io: the engine; vagrant: brings the nodes up; debootstrap: builds the node image;
# xfsprogs: the storage preflight's tests; git: pip builds from this checkout; docker-registry,
# skopeo, apache2-utils (htpasswd): the registry client's tests and benchmark.
PACKAGES=(docker.io vagrant debootstrap xfsprogs git docker-registry skopeo apache2-utils)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# No engine runs when the machine starts; start dockerd in the background (log in /var/log).
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd in the background (log: /var/log/saltyard-dockerd.log)"
  setsid dockerd >/var/log/saltyard-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { say "dockerd did not come up; see /var/log/saltyard-dockerd.log"; exit 1; }
fi

# The venv: re-created only when the dependency pins change.
stamp=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)
if [[ ! -x .venv/bin/python || "$(cat .venv/.saltyard-stamp 2>/dev/null)" != "$stamp" ]]; then
  say "creating the Python venv .venv (salt, pyinfra, pytest, testinfra; about a minute)"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip==25.1.1
  .venv/bin/pip install -q -c requirements/constraints.txt -e '.[dev]'
  echo "$stamp" > .venv/.saltyard-stamp
fi
say "host ready: $(docker version --format 'Docker engine {{.Server.Version}}'), $(.venv/bin/python --version)"
