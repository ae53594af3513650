#!/usr/bin/env bash
# Real ZooKeeper 3.8 (Debian's `zookeeper` package) for Corral's tests and
# `corral dev --masters N`: a single node or an ensemble on loopback ports.
#
#   scripts/zookeeper.sh install                 # apt-get install zookeeper (idempotent)
#   scripts/zookeeper.sh start DIR PORT [NODES]  # NODES (1 or 3) servers, client ports PORT..PORT+NODES-1
#   scripts/zookeeper.sh stop DIR                # stops what `start DIR` started
#   scripts/zookeeper.sh status DIR              # exit 0 when every node of DIR is running
#
# `start` is idempotent: nodes whose pid file names a live process are left
# alone. Each node keeps its config, data, log and pid file under DIR/nodeN.
# Peer and election ports are PORT+100+i and PORT+200+i. `start` returns once
# every node answers the `srvr` four-letter word with a mode (standalone,
# leader or follower), and prints the connect string as its last line.
set -euo pipefail

log() { echo "[zookeeper] $*" >&2; }

ZK_JAR=/usr/share/java/zookeeper.jar
JAVA="${JAVA:-java}"

install() {
    if [ -f "$ZK_JAR" ] && command -v "$JAVA" >/dev/null 2>&1; then
        log "zookeeper already installed"
        return 0
    fi
    log "installing Debian package zookeeper"
    if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq zookeeper >/dev/null
    [ -f "$ZK_JAR" ] || { log "error: $ZK_JAR missing after install"; exit 1; }
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

srvr() {
    # Four-letter word over bash's /dev/tcp; prints the answer or nothing.
    local port=$1
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf srvr >&3 && timeout 2 cat <&3) 2>/dev/null || true
}

start() {
    local dir=$1 port=$2 nodes=${3:-1}
    case "$nodes" in 1 | 3 | 5) ;; *) log "error: NODES must be 1, 3 or 5"; exit 2 ;; esac
    install
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local connect="" i
    for ((i = 1; i <= nodes; i++)); do
        local node="$dir/node$i" cport=$((port + i - 1))
        connect="${connect:+$connect,}127.0.0.1:$cport"
        if alive "$node/pid"; then
            log "node $i already running (pid $(cat "$node/pid"))"
            continue
        fi
        mkdir -p "$node/data" "$node/conf"
        echo "$i" >"$node/data/myid"
        {
            echo "tickTime=${ZK_TICK_MS:-200}"
            echo "initLimit=50"
            echo "syncLimit=25"
            echo "minSessionTimeout=${ZK_MIN_SESSION_MS:-400}"
            echo "maxSessionTimeout=60000"
            echo "dataDir=$node/data"
            echo "clientPortAddress=127.0.0.1"
            echo "clientPort=$cport"
            echo "4lw.commands.whitelist=srvr,ruok,stat"
            echo "admin.enableServer=false"
            echo "maxClientCnxns=0"
            if [ "$nodes" -gt 1 ]; then
                local j
                for ((j = 1; j <= nodes; j++)); do
                    echo "server.$j=127.0.0.1:$((port + 100 + j - 1)):$((port + 200 + j - 1))"
                done
            fi
        } >"$node/conf/zoo.cfg"
        cat >"$node/conf/log4j.properties" <<EOF
log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$node/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d %p [%t] %c{1}: %m%n
EOF
        # setsid: the server outlives this script and is not in the caller's
        # process group (a test's Ctrl-C does not reach it; `stop` does).
        setsid "$JAVA" -Xms32m -Xmx256m -XX:+UseSerialGC \
            -Dzookeeper.log.dir="$node" \
            -Dlog4j.configuration="file:$node/conf/log4j.properties" \
            -cp "$node/conf:$ZK_JAR" \
            org.apache.zookeeper.server.quorum.QuorumPeerMain "$node/conf/zoo.cfg" \
            >"$node/stdout.log" 2>&1 </dev/null &
        echo $! >"$node/pid"
        log "node $i started (pid $!, client port $cport)"
    done
    local deadline=$((SECONDS + ${ZK_START_TIMEOUT:-90}))
    for ((i = 1; i <= nodes; i++)); do
        local cport=$((port + i - 1))
        until srvr "$cport" | grep -q '^Mode: \(standalone\|leader\|follower\)'; do
            if ! alive "$dir/node$i/pid"; then
                log "error: node $i exited; its log:"
                tail -n 30 "$dir/node$i/stdout.log" "$dir/node$i/zookeeper.log" >&2 2>/dev/null || true
                exit 1
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                log "error: node $i did not serve on port $cport in time"
                exit 1
            fi
            sleep 0.2
        done
    done
    log "serving at $connect"
    echo "$connect"
}

stop() {
    local dir=$1 pidfile
    [ -d "$dir" ] || return 0
    for pidfile in "$dir"/node*/pid; do
        [ -f "$pidfile" ] || continue
        if alive "$pidfile"; then
            local pid
            pid="$(cat "$pidfile")"
            kill -CONT "$pid" 2>/dev/null || true
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            log "stopped pid $pid"
        fi
        rm -f "$pidfile"
    done
}

status() {
    local dir=$1 pidfile ok=1
    for pidfile in "$dir"/node*/pid; do alive "$pidfile" || ok=0; done
    [ "$ok" = 1 ] && ls "$dir"/node*/pid >/dev/null 2>&1
}

cmd=${1:-}
shift || true
case "$cmd" in
    install) install ;;
    start) [ $# -ge 2 ] || { log "usage: start DIR PORT [NODES]"; exit 2; }; start "$@" ;;
    stop) [ $# -ge 1 ] || { log "usage: stop DIR"; exit 2; }; stop "$1" ;;
    status) [ $# -ge 1 ] || { log "usage: status DIR"; exit 2; }; status "$1" ;;
    *) log "usage: $0 install | start DIR PORT [NODES] | stop DIR | status DIR"; exit 2 ;;
esac
