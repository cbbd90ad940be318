# tests/lib/common.sh - shared by tests/run.sh and deploy/local.sh: messages, the
# Debian packages the project needs (installed only when missing), and free ports.
# Source it; it defines functions only and changes no shell options.

PJ_PACKAGES="build-essential cmake pkg-config clang libhiredis-dev libpq-dev libyaml-dev
libjansson-dev libmicrohttpd-dev libcriterion-dev libsystemd-dev redis-server postgresql-15 python3
python3-jsonschema python3-yaml curl ca-certificates valgrind clang-format clang-tidy cppcheck
systemd man-db prometheus yamllint python3-kubernetes stunnel4 openssl"

pj_say() { printf '%s: %s\n' "${PJ_PROG:-projector}" "$*"; }
pj_die() { printf '%s: error: %s\n' "${PJ_PROG:-projector}" "$*" >&2; exit 1; }

# Prints the packages of $PJ_PACKAGES that dpkg does not report as installed.
pj_missing_packages() {
    local p missing=""
    for p in $PJ_PACKAGES; do
        case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" in
            *" installed") ;;
            *) missing="$missing $p" ;;
        esac
    done
    printf '%s\n' "${missing# }"
}

# Installs whatever is missing; runs apt-get update only when something is.
pj_install_packages() {
    command -v dpkg-query >/dev/null 2>&1 || { pj_say "not a Debian system: skipping package checks"; return 0; }
    local missing
    missing=$(pj_missing_packages)
    [ -z "$missing" ] && return 0
    [ "$(id -u)" -eq 0 ] || pj_die "missing packages: $missing (run as root, or install them)"
    pj_say "installing: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || pj_die "apt-get update failed"
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing || pj_die "could not install: $missing"
}

# Prints $1 when nothing listens on 127.0.0.1:$1 and it can be bound, else a free port.
pj_free_port() {
    python3 - "${1:-0}" <<'PY'
import socket, sys
def bindable(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
want = int(sys.argv[1])
print((want and bindable(want)) or bindable(0))
PY
}
