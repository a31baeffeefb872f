#!/usr/bin/env bash
# Build consul-template (MPL-2.0; not in Debian) from its Go module at a pinned version, once,
# into a cache, and publish it where the local cluster's salt-master serves it:
#   /var/cache/saltyard/consul-template/v$VERSION/consul-template     (the binary; tests use it)
#   artifacts/consul-template/$VERSION/consul-template_$VERSION_linux_amd64.tar.gz
#                                       (served as salt://artifacts/...; gitignored)
# Fast when already built (a version check and a compare). Prints what it does when it builds.
# The version is the pin in states/lb/defaults.yaml; --print-version prints it and exits.
# Production does not use this: its pillar names HashiCorp's release archive and its sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[build-consul-template] %s\n' "$*" >&2; }

# The one pin: lb:consul_template:version in states/lb/defaults.yaml (the state installs it, the
# lb tests run it). Read with sed, since this runs before the venv (and PyYAML) exist.
DEFAULTS=states/lb/defaults.yaml
pinned=$(sed -n '/^  consul_template:/,/^  [a-z]/s/^    version: *//p' "$DEFAULTS" | tr -d "'\"")
VERSION=${CONSUL_TEMPLATE_VERSION:-$pinned}
if [[ ! "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  say "no consul-template version (x.y.z) in $DEFAULTS (lb:consul_template:version) or \$CONSUL_TEMPLATE_VERSION: got '$VERSION'"
  exit 1
fi
if [[ "${1:-}" == "--print-version" ]]; then
  echo "$VERSION"
  exit 0
fi
CACHE=${SALTYARD_CACHE:-/var/cache/saltyard}/consul-template/v$VERSION
BIN=$CACHE/consul-template
ARTIFACT_DIR=artifacts/consul-template/$VERSION
ARCHIVE=$ARTIFACT_DIR/consul-template_${VERSION}_linux_amd64.tar.gz

built_ok() { [[ -x "$BIN" ]] && "$BIN" -version 2>&1 | grep -q "^consul-template v$VERSION "; }

if ! built_ok; then
  go=$(command -v go || true)
  [[ -n "$go" ]] || go=/usr/local/go/bin/go
  if [[ ! -x "$go" ]]; then
    say "no Go toolchain (go in PATH or /usr/local/go/bin/go): cannot build consul-template v$VERSION"
    exit 1
  fi
  say "building consul-template v$VERSION with $("$go" version | cut -d' ' -f3) (module proxy; about a minute)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # Static (CGO off) so the binary runs on any Debian release; -trimpath for a reproducible build.
  CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-trimpath \
    "$go" install "github.com/hashicorp/consul-template@v$VERSION"
  mkdir -p "$CACHE"
  install -m 0755 "$tmp/consul-template" "$BIN.new"
  mv -f "$BIN.new" "$BIN"
  built_ok || { say "the built binary does not report v$VERSION"; exit 1; }
  say "built $BIN"
fi

# The artifact the master serves: a tar.gz with the binary at its top (the layout of a release
# archive), made deterministically so its hash changes only when the binary does.
if [[ ! -f "$ARCHIVE" || "$BIN" -nt "$ARCHIVE" ]]; then
  say "packing $ARCHIVE"
  mkdir -p "$ARTIFACT_DIR"
  tar -C "$CACHE" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -cf - consul-template | gzip -n >"$ARCHIVE.new"
  mv -f "$ARCHIVE.new" "$ARCHIVE"
  (cd "$ARTIFACT_DIR" && sha256sum "$(basename "$ARCHIVE")" >"$(basename "$ARCHIVE").sha256")
fi
