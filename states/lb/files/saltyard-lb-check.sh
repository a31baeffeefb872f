#!/bin/sh
# saltyard-lb-check LIVE [NGINX_ARG...] CANDIDATE
#
# Salt's check_cmd for the nginx files of the lb role (saltyard lb): does nginx accept its whole
# configuration with CANDIDATE in place of LIVE? `nginx -t` checks only a whole configuration,
# so the configuration directory (that of nginx.conf, or of NGINX_ARG's `-c CONF`) is copied
# into a temporary directory, CANDIDATE is put where LIVE would be, the copy's files are made to
# name the copy instead of the originals, and `nginx -t -c COPY/nginx.conf` judges it. Nothing
# outside the temporary directory changes; LIVE stays as it is whatever the answer.
# NGINX_ARG... go to the nginx call (e.g. -p PREFIX -c CONF for an nginx of one's own).
#
# Exit status: 0 accepted, 1 refused (nginx -t's reason on stderr), 64 bad usage.
set -u

if [ "$#" -lt 2 ]; then
    echo "usage: $0 LIVE [NGINX_ARG...] CANDIDATE" >&2
    exit 64
fi
live=$1
shift
nginx=${SALTYARD_LB_NGINX:-nginx}

# The last argument is the candidate (Salt appends it); the ones between are nginx's, except
# `-c CONF`, which is replaced by the copy's.
conf=
count=$#
i=0
for arg in "$@"; do
    i=$((i + 1))
    if [ "$i" -eq "$count" ]; then
        candidate=$arg
    elif [ "$conf" = "-c" ]; then
        conf=$arg
    elif [ "$arg" = "-c" ]; then
        conf=-c
    else
        set -- "$@" "$arg"
    fi
done
shift "$count"
if [ -z "$conf" ] || [ "$conf" = "-c" ]; then
    conf=$("$nginx" -V 2>&1 | sed -n 's/.*--conf-path=\([^ ]*\).*/\1/p')
    conf=${conf:-/etc/nginx/nginx.conf}
fi
conf_dir=$(dirname "$conf")
case "$live" in
    "$conf_dir"/*) ;;
    *) echo "saltyard-lb-check: $live is not under nginx's configuration directory $conf_dir" >&2
       exit 64 ;;
esac
if [ ! -f "$candidate" ]; then
    echo "saltyard-lb-check: no candidate file $candidate" >&2
    exit 64
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/saltyard-lb-check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
# -L: Debian's sites-enabled are symlinks into sites-available; the copy holds their contents.
cp -RL "$conf_dir/." "$tmp/" || exit 1
copy_live=$tmp/${live#"$conf_dir"/}
mkdir -p "$(dirname "$copy_live")" && cp "$candidate" "$copy_live" || exit 1

# Every text file of the copy names the copy's directory instead of the original one (include
# lines are absolute paths on Debian). Paths elsewhere (logs, temp, pid) stay as they are.
pattern=$(printf '%s' "$conf_dir" | sed 's/[][\.*^$|]/\\&/g')
grep -rIl -- "$conf_dir" "$tmp" 2>/dev/null | while IFS= read -r file; do
    sed -i "s|$pattern/|$tmp/|g" "$file"
done

if ! out=$("$nginx" "$@" -c "$tmp/$(basename "$conf")" -t 2>&1); then
    # nginx names the copy; say which file it stands for.
    printf 'saltyard-lb-check: nginx -t refuses %s as %s: %s\n' "$candidate" "$live" \
        "$(printf '%s' "$out" | grep -v 'test failed$' | tr '\n' ' ')" >&2
    exit 1
fi
exit 0
