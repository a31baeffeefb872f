#!/bin/sh
# saltyard-rsyslog-check LIVE CANDIDATE
#
# Salt's check_cmd for the rsyslog files of the logging role: does rsyslog accept its whole
# configuration with CANDIDATE in place of LIVE (a file under /etc/rsyslog.d)? `rsyslogd -N1`
# judges a whole configuration, and a file of rsyslog.d alone lacks the modules rsyslog.conf
# loads, so /etc/rsyslog.conf and /etc/rsyslog.d are copied into a temporary directory,
# CANDIDATE is put where LIVE would be, the copy includes its own rsyslog.d, and
# `rsyslogd -N1 -f COPY/rsyslog.conf` judges it. Nothing outside the copy changes.
#
# Exit status: 0 accepted, 1 refused (rsyslogd's reason on stderr), 64 bad usage.
set -u
if [ "$#" -ne 2 ]; then
    echo "usage: $0 LIVE CANDIDATE" >&2
    exit 64
fi
live=$1
candidate=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/rsyslog.d"
cp -p /etc/rsyslog.d/*.conf "$tmp/rsyslog.d/" 2>/dev/null
cp "$candidate" "$tmp/rsyslog.d/$(basename "$live")"
sed "s#/etc/rsyslog.d/#$tmp/rsyslog.d/#g" /etc/rsyslog.conf >"$tmp/rsyslog.conf"
if ! out=$(/usr/sbin/rsyslogd -N1 -f "$tmp/rsyslog.conf" 2>&1); then
    printf '%s\n' "$out" | sed "s#$tmp/rsyslog.d/#/etc/rsyslog.d/#g" >&2
    exit 1
fi
# rsyslogd -N1 exits 0 on some errors it only reports; refuse those too.
if printf '%s\n' "$out" | grep -q 'error'; then
    printf '%s\n' "$out" | sed "s#$tmp/rsyslog.d/#/etc/rsyslog.d/#g" >&2
    exit 1
fi
exit 0
