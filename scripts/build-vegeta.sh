#!/usr/bin/env bash
# Build vegeta (MIT; an open-model HTTP load generator: it sends at the set rate whatever the
# answers take, unlike a closed loop of clients) from its Go module at a pinned version, once,
# into a cache:
#   /var/cache/saltyard/vegeta/v$VERSION/vegeta    (used by saltyard/localcluster/vegeta.py: the lb tests
#                                                  and benchmarks/lb_scaling.py)
# Fast when already built (a version check). Prints what it does when it builds.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VEGETA_VERSION:-12.13.0}
CACHE=${SALTYARD_CACHE:-/var/cache/saltyard}/vegeta/v$VERSION
BIN=$CACHE/vegeta

say() { printf '[build-vegeta] %s\n' "$*" >&2; }

# vegeta prints the version its build stamped in (-ldflags below; a plain go install leaves it
# empty).
built_ok() { [[ -x "$BIN" ]] && "$BIN" -version 2>&1 | grep -q "^Version: v$VERSION\$"; }

if ! built_ok; then
  go=$(command -v go || true)
  [[ -n "$go" ]] || go=/usr/local/go/bin/go
  if [[ ! -x "$go" ]]; then
    say "no Go toolchain (go in PATH or /usr/local/go/bin/go): cannot build vegeta v$VERSION"
    exit 1
  fi
  say "building vegeta v$VERSION with $("$go" version | cut -d' ' -f3) (module proxy; about a minute)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # Static (CGO off) so the binary runs on any Debian release; -trimpath for a reproducible build.
  CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-trimpath \
    "$go" install -ldflags "-X main.Version=v$VERSION" "github.com/tsenart/vegeta/v12@v$VERSION"
  mkdir -p "$CACHE"
  install -m 0755 "$tmp/vegeta" "$BIN.new"
  mv -f "$BIN.new" "$BIN"
  built_ok || { say "the built binary does not report v$VERSION: $("$BIN" -version 2>&1 | head -1)"; exit 1; }
  say "built $BIN"
fi
