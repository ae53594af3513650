#!/usr/bin/env bash
# RabbitMQ 3.10 (Debian's rabbitmq-server) for Corral's eventing: install it,
# and start/stop private nodes that keep everything under their own directory.
#
#   scripts/rabbitmq.sh install          # idempotent: apt-get install rabbitmq-server when missing
#   scripts/rabbitmq.sh start DIR PORT   # a private node on 127.0.0.1:PORT; prints its amqp:// URL last
#   scripts/rabbitmq.sh stop DIR         # stops the node started in DIR (SIGTERM, then SIGKILL)
#   scripts/rabbitmq.sh status DIR       # exit 0 and print the URL when the node accepts AMQP
#
# A private node has its own node name (corral_PORT@localhost), AMQP port,
# Erlang distribution port (fixed, PORT+10000; Erlang's shared port mapper
# daemon epmd is started once by the first node and stays, as it does for
# every Erlang node on a machine), Mnesia and log directories,
# configuration, Erlang cookie (HOME=DIR) and crash dump location, all under
# DIR, so nothing lands in the checkout or in /var/lib/rabbitmq and several
# nodes run side by side. The default user guest/guest is allowed from
# loopback only, as RabbitMQ ships it. `start` is idempotent: a node already
# running in DIR is reused.
set -euo pipefail

log() { echo "[rabbitmq] $*" >&2; }
die() {
    log "$*"
    exit 1
}

RABBIT_BIN=/usr/lib/rabbitmq/bin/rabbitmq-server

# Whether something at 127.0.0.1:$1 speaks AMQP 0-9-1: the protocol header
# must be answered by a connection.start method frame (type 1, channel 0).
speaks_amqp() {
    local port="$1"
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        first=$(head -c 1 <&3 | od -An -tu1 | tr -d " ")
        exec 3<&-
        [ "$first" = "1" ]
    ' "$port" 2>/dev/null
}

node_pid() {
    local dir="$1"
    [ -f "$dir/pid" ] || return 1
    local pid
    pid="$(tr -d '[:space:]' <"$dir/pid")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

cmd_install() {
    if [ -x "$RABBIT_BIN" ]; then
        log "rabbitmq-server already installed: $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)"
        return 0
    fi
    log "installing Debian's rabbitmq-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends rabbitmq-server >&2 ||
        { apt-get update >&2 && apt-get install -y --no-install-recommends rabbitmq-server >&2; }
    # The package starts a system-wide node; the tests use private ones.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
    fi
    service rabbitmq-server stop >/dev/null 2>&1 || true
    [ -x "$RABBIT_BIN" ] || die "rabbitmq-server is not installed at $RABBIT_BIN"
}

cmd_start() {
    local dir="${1:?usage: rabbitmq.sh start DIR PORT}"
    local port="${2:?usage: rabbitmq.sh start DIR PORT}"
    [ -x "$RABBIT_BIN" ] || die "rabbitmq-server is not installed; run scripts/rabbitmq.sh install"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local url="amqp://guest:guest@127.0.0.1:$port/%2f"
    if node_pid "$dir" >/dev/null && speaks_amqp "$port"; then
        log "node in $dir already accepts AMQP on $port"
        echo "$url"
        return 0
    fi
    local dist=$((port + 10000))
    if [ "$dist" -gt 65000 ]; then dist=$((port - 10000)); fi
    mkdir -p "$dir/mnesia" "$dir/log"
    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$port
log.console = false
log.file.level = info
disk_free_limit.absolute = 10MB
vm_memory_high_watermark.relative = 0.6
EOF
    echo '[].' >"$dir/enabled_plugins"
    : >"$dir/rabbitmq-env.conf"
    (
        cd "$dir"
        export HOME="$dir"
        export RABBITMQ_NODENAME="corral_$port@localhost"
        export RABBITMQ_USE_LONGNAME=false
        export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        export RABBITMQ_NODE_PORT="$port"
        export RABBITMQ_DIST_PORT="$dist"
        export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
        export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        export RABBITMQ_MNESIA_BASE="$dir/mnesia"
        export RABBITMQ_LOG_BASE="$dir/log"
        export RABBITMQ_PID_FILE="$dir/pid"
        export ERL_CRASH_DUMP="$dir/erl_crash.dump"
        # The node's distribution listens on its own fixed port.
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-start_epmd false -erl_epmd_port $dist"
        setsid "$RABBIT_BIN" </dev/null >"$dir/log/console.log" 2>&1 &
        echo $! >"$dir/launcher.pid"
    )
    local deadline=$((SECONDS + 90))
    until speaks_amqp "$port"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 40 "$dir/log/console.log" >&2 || true
            die "the node in $dir did not accept AMQP on $port within 90 s"
        fi
        if ! kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null && ! node_pid "$dir" >/dev/null; then
            tail -n 40 "$dir/log/console.log" >&2 || true
            die "the node in $dir exited during start"
        fi
        sleep 0.2
    done
    log "node corral_$port@localhost accepts AMQP on 127.0.0.1:$port (data in $dir)"
    echo "$url"
}

cmd_stop() {
    local dir="${1:?usage: rabbitmq.sh stop DIR}"
    [ -d "$dir" ] || return 0
    local pids=()
    local p
    if p="$(node_pid "$dir")"; then pids+=("$p"); fi
    if [ -f "$dir/launcher.pid" ]; then
        p="$(cat "$dir/launcher.pid")"
        if kill -0 "$p" 2>/dev/null; then pids+=("$p"); fi
    fi
    [ "${#pids[@]}" -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            log "node process $p did not stop within 30 s; SIGKILL"
            kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
        fi
    done
    log "stopped the node in $dir"
}

cmd_status() {
    local dir="${1:?usage: rabbitmq.sh status DIR}"
    [ -f "$dir/rabbitmq.conf" ] || die "no node in $dir"
    local port
    port="$(sed -n 's/^listeners.tcp.default = 127.0.0.1:\([0-9]*\)$/\1/p' "$dir/rabbitmq.conf")"
    if node_pid "$dir" >/dev/null && speaks_amqp "$port"; then
        echo "amqp://guest:guest@127.0.0.1:$port/%2f"
        return 0
    fi
    log "the node in $dir is not running"
    return 1
}

case "${1:-}" in
install) cmd_install ;;
start) shift && cmd_start "$@" ;;
stop) shift && cmd_stop "$@" ;;
status) shift && cmd_status "$@" ;;
*) die "usage: $0 install | start DIR PORT | stop DIR | status DIR" ;;
esac
