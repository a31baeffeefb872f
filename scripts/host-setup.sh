#!/usr/bin/env bash
# Prepare this machine (Debian 12, root) for the local cluster: Debian packages, a Docker engine
# running in the background, and the project's Python venv. Safe to run again: each step checks
# first and says what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[host-setup] %s\n' "$*" >&2; }

# docker.io: the engine; vagrant: brings the nodes up; debootstrap: builds the node image;
# xfsprogs: the storage preflight's tests; git: pip builds from this checkout; docker-registry,
# skopeo, apache2-utils (htpasswd): the registry client's tests and benchmark; nginx: the lb
# role's tests (they run their own nginx on a loopback port, never the distro's service);
# qemu-system-x86, e2fsprogs (mkfs.ext4 -d, debugfs), openssh-client: the QEMU VM nodes (lvs1);
# maven, openjdk-17-jdk-headless: build the Flume distribution (scripts/build-flume.sh) and run
# Flume in the logging tests.
PACKAGES=(docker.io vagrant debootstrap xfsprogs git docker-registry skopeo apache2-utils nginx
  qemu-system-x86 e2fsprogs openssh-client maven openjdk-17-jdk-headless)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  # No package may start its service here (nginx would take port 80 on the host): a policy-rc.d
  # that denies every start, only for this install and only when none is in place already.
  policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# saltyard host-setup: no service starts during this install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [[ -z "$policy" ]] || rm -f "$policy"
  ((rc == 0)) || exit "$rc"
fi
# The distro's nginx service stays off on this host: the lb tests start their own nginx.
if [[ -x /etc/init.d/nginx ]] && command -v update-rc.d >/dev/null && ls /etc/rc2.d/S*nginx >/dev/null 2>&1; then
  update-rc.d nginx disable >/dev/null 2>&1 || true
fi

# --- Consul (the bridge's tests run a real agent) -------------------------------------------
# Bookworm has no consul; bullseye has 1.8.7 (MPL; 1.17+ is not open source, never use it).
# The bullseye suite comes from the same mirror as the machine's bookworm entry, and an apt
# pin lets ONLY the consul package come from it: everything else in bullseye gets priority -1,
# so an upgrade can never pull older libraries into this bookworm host.
if ! command -v consul >/dev/null 2>&1; then
  # The mirror serving the bookworm suite, from deb822 .sources files or one-line entries.
  apt_sources=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" && "$f" != */saltyard-bullseye.sources ]] && apt_sources+=("$f")
  done
  mirror=$(awk '
    function check() { if (!found && uris != "" && suites ~ /(^|[ \t])bookworm([ \t]|$)/) found = uris }
    FNR == 1 { check(); uris = ""; suites = "" }
    /^URIs:/ { uris = $2 }
    /^Suites:/ { suites = $0 }
    /^[ \t]*$/ { check(); uris = ""; suites = "" }
    !found && /^deb[ \t]/ && $3 == "bookworm" { found = $2 }
    END { check(); print found }
  ' "${apt_sources[@]}" /dev/null)
  mirror=${mirror:-http://deb.debian.org/debian}
  source_file=/etc/apt/sources.list.d/saltyard-bullseye.sources
  pin_file=/etc/apt/preferences.d/saltyard-consul
  source_text="# saltyard (scripts/host-setup.sh): bullseye only for the consul package; see $pin_file
Types: deb
URIs: $mirror
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  # The consul stanza comes first: apt takes the first record that matches a package.
  pin_text="# saltyard (scripts/host-setup.sh): only consul may come from bullseye
Package: consul
Pin: release n=bullseye
Pin-Priority: 500

Package: *
Pin: release n=bullseye
Pin-Priority: -1"
  [[ "$(cat "$pin_file" 2>/dev/null)" == "$pin_text" ]] || printf '%s\n' "$pin_text" >"$pin_file"
  if [[ "$(cat "$source_file" 2>/dev/null)" != "$source_text" ]]; then
    say "adding the bullseye suite of $mirror (pinned to the consul package only)"
    printf '%s\n' "$source_text" >"$source_file"
    apt-get update -qq
  fi
  apt-cache policy consul 2>/dev/null | grep -q 'Candidate: 1\.' || apt-get update -qq
  say "installing consul from bullseye"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends consul >/dev/null
fi
# ---------------------------------------------------------------------------------------------

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

# consul-template for the lb role: built once from its Go module (pinned), served to the local
# cluster from artifacts/ (gitignored).
scripts/build-consul-template.sh
# Flume for the logging role: its jars and saltyard's plugin (flume/), served from artifacts/.
scripts/build-flume.sh
# vegeta, the load generator of the lb tests and benchmarks: built once from its Go module.
scripts/build-vegeta.sh

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
