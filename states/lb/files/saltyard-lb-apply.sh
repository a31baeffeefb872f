#!/bin/sh
# saltyard-lb-apply STAGED LIVE [NGINX_ARG...]
#
# consul-template's command for the lb role (saltyard lb). consul-template renders the catalog
# into STAGED; this script swaps STAGED into LIVE (the file nginx includes), validates the whole
# configuration with `nginx -t` and reloads nginx gracefully. When validation fails it puts the
# previous LIVE back, so the last good configuration stays on disk and in nginx, logs why (syslog
# tag saltyard-lb, priority daemon.err, and stderr, which consul-template logs) and exits 1.
# NGINX_ARG... go to every nginx call (e.g. -p PREFIX -c CONF for an nginx of one's own).
#
# After a reload, LIVE.reloaded is touched: nginx serves LIVE when that stamp is not older.
#
# Exit status: 0 reloaded (or nothing to do), 1 refused (last good kept), 2 reload failed after a
# valid configuration was put in place, 64 bad usage.
set -u

if [ "$#" -lt 2 ]; then
    echo "usage: $0 STAGED LIVE [NGINX_ARG...]" >&2
    exit 64
fi
staged=$1
live=$2
shift 2
nginx=${SALTYARD_LB_NGINX:-nginx}

log() {
    # $1 = syslog priority, the rest the message; stderr always, syslog when it is there.
    priority=$1
    shift
    echo "saltyard-lb: $*" >&2
    if [ -n "${SALTYARD_LB_SYSLOG_SOCKET:-}" ]; then
        logger -t saltyard-lb -p "daemon.$priority" -u "$SALTYARD_LB_SYSLOG_SOCKET" -- "$*" 2>/dev/null
    else
        logger -t saltyard-lb -p "daemon.$priority" -- "$*" 2>/dev/null
    fi
    return 0
}

# One swap at a time (consul-template runs one command per render, but a person may run it too).
exec 9>"$live.lock" || exit 1
flock 9 || exit 1

if [ ! -f "$staged" ]; then
    log err "no rendered file $staged: nothing applied, nginx keeps $live"
    exit 1
fi
if [ -f "$live" ] && cmp -s "$staged" "$live"; then
    exit 0
fi

backup="$live.last-good"
tmp="$live.new.$$"
if [ -f "$live" ]; then
    cp -p "$live" "$backup" || { log err "cannot back up $live: nothing applied"; exit 1; }
else
    : >"$backup"
fi
cp "$staged" "$tmp" && mv -f "$tmp" "$live" || {
    rm -f "$tmp"
    log err "cannot write $live: nothing applied"
    exit 1
}

if ! out=$("$nginx" "$@" -t 2>&1); then
    mv -f "$backup" "$live"
    # nginx -t says what is wrong (file, line); keep it on one log line.
    reason=$(printf '%s' "$out" | grep -v 'test failed$' | tr '\n' ' ')
    log err "render refused by nginx -t, last good configuration kept (rejected render: $staged): $reason"
    exit 1
fi

if ! out=$("$nginx" "$@" -s reload 2>&1); then
    log err "configuration valid and in place, but reload failed: $(printf '%s' "$out" | tr '\n' ' ')"
    exit 2
fi
rm -f "$backup"
# When nginx last took LIVE: a LIVE newer than this stamp is not what nginx serves yet (the
# release workflow's wait for a canary share reads both, release_traffic.share).
touch "$live.reloaded"
log info "applied $staged ($(grep -c '^upstream ' "$live") upstreams) and reloaded nginx"
exit 0
