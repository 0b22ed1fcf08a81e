#!/usr/bin/env bash
# Install the corral systemd units: the service user, its directories, the units and
# example settings. Idempotent: run it again after an upgrade; it never overwrites an
# existing /etc/corral/*.env.
#
#   sudo deploy/systemd/install.sh                       # server and agent units
#   sudo deploy/systemd/install.sh --role agent          # a GPU node
#   deploy/systemd/install.sh --dry-run                  # print what it would do
#   deploy/systemd/install.sh --prefix /tmp/root         # install under a staging root
#
# Options:
#   --role server|agent|both   which units to install (default: both)
#   --corral PATH              the corral executable the units start
#                              (default: /opt/corral/venv/bin/corral)
#   --prefix DIR               install under DIR instead of /; creates no user and
#                              does not call systemctl (packaging, tests)
#   --dry-run                  print the commands instead of running them
#
# It does not start anything: edit /etc/corral/*.env, then
#   systemctl enable --now corral-server   (or corral-agent)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
docs="$here/../../docs"
role=both
corral=/opt/corral/venv/bin/corral
prefix=""
dry_run=0
user=corral

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --role) role=${2:?--role needs a value}; shift 2 ;;
        --corral) corral=${2:?--corral needs a path}; shift 2 ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done
case $role in
    server) roles=(server) ;;
    agent) roles=(agent) ;;
    both) roles=(server agent) ;;
    *) die "--role: must be server, agent or both, not '$role'" ;;
esac
[[ $corral == /* ]] || die "--corral: must be an absolute path, not '$corral'"
[[ -z $prefix || $prefix == /* ]] || prefix="$(pwd)/$prefix"

run() {  # run COMMAND...: print it; run it unless --dry-run
    echo "+ $*"
    if [[ $dry_run -eq 0 ]]; then "$@"; fi
}

ensure_user() {
    if [[ -n $prefix ]]; then
        echo "skip: creating user $user (--prefix)"
    elif id -u "$user" >/dev/null 2>&1; then
        echo "ok: user $user exists"
    else
        run useradd --system --user-group --home-dir /var/lib/corral --no-create-home \
            --shell /usr/sbin/nologin --comment "corral scheduler" "$user"
    fi
}

owner_args() {  # owner_args OWNER: install(1) ownership options; none under a staging root
    if [[ -z $prefix ]]; then echo "-o $1 -g $user"; fi
}

install_unit() {  # install_unit ROLE: the unit, starting $corral
    local unit="corral-$1.service" tmp
    tmp=$(mktemp)
    sed "s#/opt/corral/venv/bin/corral#$corral#g" "$here/$unit" >"$tmp"
    run install -D -m 644 "$tmp" "$prefix/etc/systemd/system/$unit"
    rm -f "$tmp"
}

install_env() {  # install_env ROLE: the example settings, unless settings exist
    local target="$prefix/etc/corral/$1.env"
    if [[ -e $target ]]; then
        echo "keep: $target (already there)"
    else
        # shellcheck disable=SC2046  # owner_args is empty or three words
        run install -D -m 640 $(owner_args root) "$here/$1.env.example" "$target"
    fi
}

ensure_user
# shellcheck disable=SC2046
run install -d -m 750 $(owner_args root) "$prefix/etc/corral"
for r in "${roles[@]}"; do
    install_unit "$r"
    install_env "$r"
    # the state directory; systemd also creates it (StateDirectory=) and keeps its owner
    state="$prefix/var/lib/corral$([[ $r == agent ]] && echo -agent || true)"
    # shellcheck disable=SC2046
    run install -d -m 750 $(owner_args "$user") "$state"
done
if [[ -f $docs/operator-guide.md ]]; then
    run install -D -m 644 "$docs/operator-guide.md" "$prefix/usr/share/doc/corral/operator-guide.md"
fi
if [[ -z $prefix ]] && command -v systemctl >/dev/null 2>&1; then
    run systemctl daemon-reload
fi
echo "done: edit $prefix/etc/corral/*.env, then systemctl enable --now corral-<role>"
