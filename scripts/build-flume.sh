#!/usr/bin/env bash
# Assemble the Flume distribution of the logging role (Apache Flume's jars, from Maven Central,
# and saltyard's plugin, built from flume/) once, into a cache, and publish it where the local
# cluster's salt-master serves it:
#   /var/cache/saltyard/flume/$VERSION-$HASH/lib/         (every jar; the tests run Flume from it)
#   artifacts/flume/$VERSION/saltyard-flume-$VERSION.tar.gz  (lib/ at its top; + .sha256;
#                                       served as salt://artifacts/...; gitignored)
# $HASH is a short hash of flume/pom.xml and flume/src, so a change to the plugin is a new build.
# Fast when already built (a marker and a compare). Prints what it does when it builds.
# The version is the pin in states/logging/defaults.yaml; --print-version prints it and exits,
# --print-lib prints the cache's lib/ directory (built or not) and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[build-flume] %s\n' "$*" >&2; }

# The one pin: logging:flume:version in states/logging/defaults.yaml (the state installs it, the
# logging tests run it). Read with sed, since this runs before the venv (and PyYAML) exist.
DEFAULTS=states/logging/defaults.yaml
pinned=$(sed -n '/^  flume:/,/^  [a-z]/s/^    version: *//p' "$DEFAULTS" | sed 's/ *#.*//' | tr -d "'\" ")
VERSION=${FLUME_VERSION:-$pinned}
if [[ ! "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  say "no Flume version (x.y.z) in $DEFAULTS (logging:flume:version) or \$FLUME_VERSION: got '$VERSION'"
  exit 1
fi
if [[ "${1:-}" == "--print-version" ]]; then
  echo "$VERSION"
  exit 0
fi
# The plugin's sources and pom, names included (a renamed class is a change too).
HASH=$( (cd flume && find pom.xml src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
  sha256sum | cut -c1-12)
CACHE=${SALTYARD_CACHE:-/var/cache/saltyard}/flume/$VERSION-$HASH
LIB=$CACHE/lib
if [[ "${1:-}" == "--print-lib" ]]; then
  echo "$LIB"
  exit 0
fi
PLUGIN_VERSION=$(sed -n 's:^  <version>\(.*\)</version>$:\1:p' flume/pom.xml | head -1)
PLUGIN_JAR=saltyard-flume-$PLUGIN_VERSION.jar
ARTIFACT_DIR=artifacts/flume/$VERSION
ARCHIVE=$ARTIFACT_DIR/saltyard-flume-$VERSION.tar.gz

built_ok() {
  [[ -f "$CACHE/.built" && -f "$LIB/$PLUGIN_JAR" && -f "$LIB/flume-ng-node-$VERSION.jar" \
    && -f "$CACHE/saltyard-flume-$VERSION.tar.gz" ]]
}

if ! built_ok; then
  for tool in mvn java; do
    if ! command -v "$tool" >/dev/null; then
      say "no $tool in PATH (Debian: maven, openjdk-17-jdk-headless): run scripts/host-setup.sh"
      exit 1
    fi
  done
  say "building Flume $VERSION with saltyard's plugin (flume/, $HASH): Maven Central, $(java -version 2>&1 | head -1)"
  started=$SECONDS
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # The build directory is outside the checkout; the Flume version is the pin, not the pom's.
  # Maven's output (Debian's 3.8 prints colour codes even with -q -B) is shown only on failure.
  if ! mvn -q -B -Dstyle.color=never -f flume/pom.xml -Dflume.version="$VERSION" \
    -Dsaltyard.build.dir="$tmp/target" package \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/dist/lib" \
    >"$tmp/mvn.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$tmp/mvn.log" | grep -v '^[[:space:]]*$' >&2 || true
    say "the Maven build failed (output above)"
    exit 1
  fi
  cp "$tmp/target/$PLUGIN_JAR" "$tmp/dist/lib/"
  # Deterministic: names sorted, times, owners and modes fixed, no gzip timestamp; so the
  # archive (and its sha256 in the pillar) changes only when a jar does.
  tar -C "$tmp/dist" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --mode='u=rwX,go=rX' -cf - lib | gzip -n >"$tmp/dist/saltyard-flume-$VERSION.tar.gz"
  touch "$tmp/dist/.built"
  mkdir -p "$(dirname "$CACHE")"
  rm -rf "$CACHE"
  mv "$tmp/dist" "$CACHE"
  built_ok || { say "the build left no $LIB/$PLUGIN_JAR or flume-ng-node-$VERSION.jar"; exit 1; }
  say "built $LIB: $(find "$LIB" -name '*.jar' | wc -l) jars, $(du -sm "$LIB" | cut -f1) MB, in $((SECONDS - started)) s"
fi

# The artifact the master serves: the cache's archive, copied when it differs (another plugin
# build, another version).
if ! cmp -s "$CACHE/saltyard-flume-$VERSION.tar.gz" "$ARCHIVE"; then
  say "publishing $ARCHIVE"
  mkdir -p "$ARTIFACT_DIR"
  cp "$CACHE/saltyard-flume-$VERSION.tar.gz" "$ARCHIVE.new"
  mv -f "$ARCHIVE.new" "$ARCHIVE"
  (cd "$ARTIFACT_DIR" && sha256sum "$(basename "$ARCHIVE")" >"$(basename "$ARCHIVE").sha256")
fi
