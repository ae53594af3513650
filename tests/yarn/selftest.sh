#!/usr/bin/env bash
# Self-test of the YARN stand-ins (test doubles, see README.md), without
# cargo: the ResourceManager stand-in, the NodeManager stand-in launched as
# `yarn nodemanager`, and `yarn rmadmin`. Needs bash, python3 and nothing
# else. Every wait is a polling loop with a deadline; every process started
# here is ended on exit. Prints one `ok - ...` line per check; on failure the
# logs are printed and kept (SELFTEST_KEEP=1 keeps them on success too).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
YARN="$here/home/bin/yarn"
RM="$here/rm_standin.py"
work=$(mktemp -d "${TMPDIR:-/tmp}/yarn-standin-selftest.XXXXXX")
pids=()

cleanup() {
    local rc=$?
    local p
    for p in "${pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -CONT "$p" 2>/dev/null || true
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
    local deadline=$((SECONDS + 3))
    for p in "${pids[@]}"; do
        while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if ((rc != 0)) || [ -n "${SELFTEST_KEEP:-}" ]; then
        local f
        for f in "$work"/*.out "$work"/*.err; do
            ((rc != 0)) || break
            [ -s "$f" ] || continue
            echo "----- $f" >&2
            tail -n 40 "$f" >&2
        done
        if ((rc != 0)); then
            echo "selftest FAILED; its files are kept in $work" >&2
        else
            echo "files kept in $work (SELFTEST_KEEP)"
        fi
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "FAILED: $*" >&2
    exit 1
}
ok() { echo "ok - $*"; }

# ---- python helpers (standard library only) ----
cat >"$work/q.py" <<'EOF'
# q.py URL EXPR: GET URL (2 s timeout), evaluate EXPR with the JSON as `j`;
# prints the value; exit 0 when it is truthy.
import json, sys, urllib.request
url, expr = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(url, timeout=2) as r:
        j = json.loads(r.read(1 << 20))
except Exception as e:
    print("%s: %s" % (url, e))
    sys.exit(2)
try:
    v = eval(expr, {"j": j})
except Exception as e:
    print("%s on %s" % (repr(e), json.dumps(j)[:2000]))
    sys.exit(2)
print(json.dumps(v)[:2000] if not isinstance(v, bool) else "%s: %s" % (v, json.dumps(j)[:2000]))
sys.exit(0 if v else 1)
EOF
cat >"$work/call.py" <<'EOF'
# call.py METHOD URL [BODY]: prints "<status> <answer>" (2 s timeout).
import sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
if data is not None and data.startswith(b"@big:"):
    data = b" " * int(data[5:])
req = urllib.request.Request(url, data=data, method=method,
                             headers={"Content-Type": "application/json"})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(req, timeout=2) as r:
        print(r.status, r.read(1 << 20).decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read(1 << 20).decode())
except Exception as e:
    print("000", e)
EOF
cat >"$work/ports.py" <<'EOF'
# ports.py N: N distinct free ports (bound on 0.0.0.0 together, then freed).
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
cat >"$work/site.py" <<'EOF'
# site.py FILE name=value...: writes a Hadoop site file.
import sys
from xml.sax.saxutils import escape
props = [a.split("=", 1) for a in sys.argv[2:]]
with open(sys.argv[1], "w") as f:
    f.write("<?xml version=\"1.0\"?>\n<configuration>\n")
    for name, value in props:
        f.write("  <property><name>%s</name><value>%s</value></property>\n"
                % (escape(name), escape(value)))
    f.write("</configuration>\n")
EOF
cat >"$work/hold.py" <<'EOF'
# hold.py PORT: holds a listening socket on 0.0.0.0:PORT until killed.
import signal, socket, sys
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
print("holding", flush=True)
while True:
    signal.pause()
EOF

q() { python3 "$work/q.py" "$@"; }
call() { python3 "$work/call.py" "$@"; }
now_ms() { python3 -c 'import time; print(int(time.time()*1000))'; }

# check WHAT COMMAND...: the command succeeds, else fail with its output.
check() {
    local what=$1 out
    shift
    out=$("$@" 2>&1) || fail "$what: $out"
    ok "$what"
}
# wait_until SECONDS WHAT COMMAND...: polls every 100 ms until it succeeds.
wait_until() {
    local secs=$1 what=$2 out deadline
    shift 2
    deadline=$(($(now_ms) + secs * 1000))
    while true; do
        if out=$("$@" 2>&1); then
            ok "$what"
            return 0
        fi
        (($(now_ms) < deadline)) || fail "$what: not within ${secs}s; last: $out"
        sleep 0.1
    done
}
# alive PID: the process runs (not a zombie).
alive() {
    [ -r "/proc/$1/stat" ] || return 1
    local state
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
# wait_exit PID SECONDS: waits for a child of this shell to exit; sets rc
# to its exit code ("timeout" if it still runs). Not for $(...): a subshell
# cannot wait for this shell's children.
wait_exit() {
    local pid=$1 deadline
    deadline=$(($(now_ms) + $2 * 1000))
    rc=0
    while alive "$pid"; do
        if (($(now_ms) >= deadline)); then
            rc=timeout
            return 0
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || rc=$?
}
# expect_code WHAT WANT GOT
expect_code() {
    [ "$3" = "$2" ] || fail "$1: exit code $3, expected $2"
}
contains() { grep -qF -- "$2" "$1" || fail "$1 does not say: $2 (it says: $(head -c 2000 "$1"))"; }

# ---- the ResourceManager stand-in ----
read -r rm_port rm2_port rpc loc web shuf other <<<"$(python3 "$work/ports.py" 7)"
RMURL="http://127.0.0.1:$rm_port"
EXCLUDE="$work/exclude"
python3 "$RM" --port "$rm_port" --exclude-file "$EXCLUDE" --expiry-ms 3000 \
    >"$work/rm.out" 2>"$work/rm.err" &
pids+=($!)
wait_until 10 "the RM stand-in listens" grep -q "^rm stand-in listening on 127.0.0.1:$rm_port\$" "$work/rm.out"
check "cluster info STARTED" q "$RMURL/ws/v1/cluster/info" 'j["clusterInfo"]["state"] == "STARTED" and j["clusterInfo"]["haState"] == "ACTIVE"'
check "no nodes: {\"nodes\": null}" q "$RMURL/ws/v1/cluster/nodes" 'j == {"nodes": None}'
check "no apps: {\"apps\": null}" q "$RMURL/ws/v1/cluster/apps" 'j == {"apps": None}'
out=$(call GET "$RMURL/no/such/thing")
[[ $out == "404 "*NotFoundException* ]] || fail "unknown path: $out"
ok "unknown path: 404 JSON"
out=$(call POST "$RMURL/standin/apps" "@big:$((2 * 1024 * 1024))")
[[ $out == "413 "* ]] || fail "a 2 MiB body: $out"
ok "a body over 1 MiB: 413"
out=$(call POST "$RMURL/standin/apps" '{"containers": -1, "memoryMB": 1024, "vcores": 1}')
[[ $out == "400 "*containers* ]] || fail "bad app: $out"
ok "an app of -1 containers: 400"

# ---- yarn version / usage ----
check "yarn version" "$YARN" version
# Read whole (not piped into `grep -q`, which may close the pipe early).
version_out="$("$YARN" version)"
[[ ${version_out%%$'\n'*} == "Hadoop 3.4.1-corral-standin" ]] || fail "yarn version's first line"
rc=0
"$YARN" frobnicate 2>"$work/usage.err" || rc=$?
expect_code "yarn frobnicate" 1 "$rc"
contains "$work/usage.err" "Usage: yarn"
ok "an unknown command: usage, exit 1"

# ---- configuration ----
NMHOST=nm-host-1
NODE="$NMHOST:$rpc"
base_props=(
    "yarn.resourcemanager.hostname=127.0.0.1"
    "yarn.resourcemanager.webapp.address=127.0.0.1:$rm_port"
    "yarn.nodemanager.hostname=$NMHOST"
    "yarn.nodemanager.resource.cpu-vcores=8"
    "yarn.nodemanager.resource.memory-mb=8192"
    "yarn.nodemanager.address=0.0.0.0:$rpc"
    "yarn.nodemanager.localizer.address=0.0.0.0:$loc"
    "yarn.nodemanager.webapp.address=0.0.0.0:$web"
    "mapreduce.shuffle.port=$shuf"
    "yarn.nodemanager.aux-services=mapreduce_shuffle"
    "yarn.nodemanager.aux-services.mapreduce_shuffle.class=org.apache.hadoop.mapred.ShuffleHandler"
)
OPTS="-Dyarn.nodemanager.hostname=$NMHOST -Dyarn.nodemanager.resource.cpu-vcores=8 -Dyarn.nodemanager.resource.memory-mb=8192 -Dyarn.resourcemanager.hostname=127.0.0.1 -Xmx512m"
mkdir -p "$work/conf" "$work/sandbox"
python3 "$work/site.py" "$work/conf/yarn-site.xml" "${base_props[@]}"

# run_nm NAME [VAR=value...]: starts `yarn nodemanager` in the background
# (HADOOP_CONF_DIR=$work/conf, YARN_NODEMANAGER_OPTS=$OPTS unless given);
# its pid in $nm_pid, output in $work/NAME.out/.err.
run_nm() {
    local name=$1
    shift
    env HADOOP_CONF_DIR="$work/conf" YARN_NODEMANAGER_OPTS="$OPTS" \
        MESOS_SANDBOX="$work/sandbox" "$@" "$YARN" nodemanager \
        >"$work/$name.out" 2>"$work/$name.err" &
    nm_pid=$!
    pids+=("$nm_pid")
}

# bad_config NAME WANT_TEXT [VAR=value...]: exits 2 saying so.
bad_config() {
    local name=$1 want=$2 rc
    shift 2
    run_nm "$name" "$@"
    wait_exit "$nm_pid" 10
    expect_code "bad configuration ($name)" 2 "$rc"
    contains "$work/$name.err" "nodemanager stand-in: bad configuration: "
    contains "$work/$name.err" "$want"
    ok "bad configuration ($name): exit 2, says: $want"
}
mkdir -p "$work/badconf"
python3 "$work/site.py" "$work/badconf/yarn-site.xml" "${base_props[@]}" \
    "yarn.nodemanager.resource.memory-mb=lots"
bad_config bad-memory "yarn.nodemanager.resource.memory-mb='lots' is not an integer" \
    HADOOP_CONF_DIR="$work/badconf" YARN_NODEMANAGER_OPTS="-Dyarn.nodemanager.resource.cpu-vcores=8 -Dyarn.nodemanager.resource.memory-mb=lots"
bad_config mismatch "yarn.nodemanager.resource.memory-mb is '4096' in YARN_NODEMANAGER_OPTS but '8192' in yarn-site.xml" \
    YARN_NODEMANAGER_OPTS="-Dyarn.nodemanager.resource.cpu-vcores=8 -Dyarn.nodemanager.resource.memory-mb=4096"
bad_config no-opts "YARN_NODEMANAGER_OPTS has no -Dyarn.nodemanager.resource.cpu-vcores" \
    YARN_NODEMANAGER_OPTS="-Dyarn.nodemanager.resource.memory-mb=8192"
python3 "$work/site.py" "$work/badconf/yarn-site.xml" "${base_props[@]}" \
    "yarn.nodemanager.aux-services=spark_shuffle" "yarn.nodemanager.webapp.address=0.0.0.0:99999"
bad_config no-shuffle "does not contain mapreduce_shuffle" HADOOP_CONF_DIR="$work/badconf"
contains "$work/no-shuffle.err" "yarn.nodemanager.webapp.address: '0.0.0.0:99999': the port must be 1..65535"
mkdir -p "$work/emptyconf"
bad_config no-site "yarn-site.xml" HADOOP_CONF_DIR="$work/emptyconf"

# A taken port: exit 3.
python3 "$work/hold.py" "$web" >"$work/hold.out" 2>&1 &
hold_pid=$!
pids+=("$hold_pid")
wait_until 10 "a listener holds the webapp port $web" grep -q holding "$work/hold.out"
run_nm taken-port
wait_exit "$nm_pid" 10
expect_code "a taken port" 3 "$rc"
contains "$work/taken-port.err" "nodemanager stand-in: cannot bind webapp port $web: "
ok "a taken webapp port: exit 3"
kill "$hold_pid"
wait_exit "$hold_pid" 5
[ "$rc" != timeout ] || fail "the port holder did not stop"

# ---- a NodeManager registers ----
run_nm nm1
nm1=$nm_pid
wait_until 15 "node $NODE RUNNING in /ws/v1/cluster/nodes" \
    q "$RMURL/ws/v1/cluster/nodes" '[(n["id"], n["state"], n["nodeHostName"], n["totalResource"]) for n in j["nodes"]["node"]] == [("'"$NODE"'", "RUNNING", "'"$NMHOST"'", {"memory": 8192, "vCores": 8})]'
check "nodeHTTPAddress names the webapp port" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["nodeHTTPAddress"] == "'"$NMHOST:$web"'"'
check "nodes?states=DECOMMISSIONING is empty" q "$RMURL/ws/v1/cluster/nodes?states=DECOMMISSIONING" 'j == {"nodes": None}'
check "metrics: 8192 MB, 8 vcores, 1 active node" q "$RMURL/ws/v1/cluster/metrics" 'j["clusterMetrics"]["totalMB"] == 8192 and j["clusterMetrics"]["availableMB"] == 8192 and j["clusterMetrics"]["totalVirtualCores"] == 8 and j["clusterMetrics"]["activeNodes"] == 1 and j["clusterMetrics"]["totalNodes"] == 1'
check "nm-standin.json records ports and node id" python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
want = {"rpc": '"$rpc"', "localizer": '"$loc"', "webapp": '"$web"', "shuffle": '"$shuf"'}
assert v["ports"] == want, v["ports"]
assert v["nodeId"] == sys.argv[2], v["nodeId"]
assert v["opts"]["yarn.nodemanager.resource.memory-mb"] == "8192", v["opts"]
assert v["properties"]["mapreduce.shuffle.port"] == "'"$shuf"'", v["properties"]
' "$work/sandbox/nm-standin.json" "$NODE"
NMURL="http://127.0.0.1:$web"
check "NM /ws/v1/node/info" q "$NMURL/ws/v1/node/info" 'j["nodeInfo"]["id"] == "'"$NODE"'" and j["nodeInfo"]["totalPmemAllocatedContainersMB"] == 8192 and j["nodeInfo"]["totalVCoresAllocatedContainers"] == 8 and j["nodeInfo"]["nodeHealthy"] is True'
check "NM has no containers" q "$NMURL/ws/v1/node/containers" 'j == {"containers": None}'
check "the rpc, localizer and shuffle ports accept connections" python3 -c '
import socket, sys
for p in sys.argv[1:]:
    socket.create_connection(("127.0.0.1", int(p)), timeout=2).close()
' "$rpc" "$loc" "$shuf"

# ---- node resource updates ----
out=$(call POST "$RMURL/ws/v1/cluster/nodes/$NODE/resource" '{"resource": {"memory": 6144, "vCores": 6}, "overCommitTimeout": -1}')
[ "$out" = '200 {"memory": 6144, "vCores": 6}' ] || fail "updateNodeResource REST: $out"
check "REST updateNodeResource sets totalResource" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["totalResource"] == {"memory": 6144, "vCores": 6}'
out=$(call POST "$RMURL/ws/v1/cluster/nodes/$NODE/resource" '{"resource": {"memory": -1, "vCores": 6}}')
[[ $out == "400 "* ]] || fail "negative memory: $out"
out=$(call POST "$RMURL/ws/v1/cluster/nodes/$NODE/resource" '{"resource": 5}')
[[ $out == "400 "* ]] || fail "malformed: $out"
out=$(call POST "$RMURL/ws/v1/cluster/nodes/nobody:1/resource" '{"resource": {"memory": 1, "vCores": 1}}')
[[ $out == "404 "*"nodeId, nobody:1, is not found"* ]] || fail "unknown node: $out"
ok "REST updateNodeResource: 400 on bad bodies, 404 on an unknown node"
check "yarn rmadmin -updateNodeResource" env HADOOP_CONF_DIR="$work/conf" "$YARN" rmadmin -updateNodeResource "$NODE" 8192 8
check "rmadmin set totalResource back" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["totalResource"] == {"memory": 8192, "vCores": 8}'
rc=0
env HADOOP_CONF_DIR="$work/conf" "$YARN" rmadmin -updateNodeResource nobody:1 1024 1 2>"$work/unr.err" || rc=$?
expect_code "rmadmin -updateNodeResource of an unknown node" 1 "$rc"
contains "$work/unr.err" "127.0.0.1:$rm_port"
ok "rmadmin -updateNodeResource of an unknown node: exit 1 naming the RM"

# ---- an app's containers run on the node ----
out=$(call POST "$RMURL/standin/apps" '{"name": "selftest", "containers": 2, "memoryMB": 1024, "vcores": 1}')
[[ $out == "200 "* ]] || fail "submit: $out"
app1=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1].split(" ",1)[1])["id"])' "$out")
wait_until 10 "2 containers on the NM's /ws/v1/node/containers" \
    q "$NMURL/ws/v1/node/containers" 'len(j["containers"]["container"]) == 2 and all(c["totalMemoryNeededMB"] == 1024 and c["totalVCoresNeeded"] == 1 and c["state"] == "RUNNING" for c in j["containers"]["container"])'
check "metrics: allocatedMB 2048, 2 containers, availableMB 6144" q "$RMURL/ws/v1/cluster/metrics" 'j["clusterMetrics"]["allocatedMB"] == 2048 and j["clusterMetrics"]["containersAllocated"] == 2 and j["clusterMetrics"]["availableMB"] == 6144 and j["clusterMetrics"]["appsRunning"] == 1'
check "the app RUNNING with 2 containers" q "$RMURL/ws/v1/cluster/apps" '[(a["id"], a["state"], a["runningContainers"], a["allocatedMB"]) for a in j["apps"]["app"]] == [("'"$app1"'", "RUNNING", 2, 2048)]'
out=$(call POST "$RMURL/standin/apps" '{"name": "too-big", "containers": 1, "memoryMB": 16384, "vcores": 1}')
big=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1].split(" ",1)[1])["id"])' "$out")
check "a container too big for any node stays pending" q "$RMURL/ws/v1/cluster/metrics" 'j["clusterMetrics"]["pendingMB"] == 16384 and j["clusterMetrics"]["containersPending"] == 1 and j["clusterMetrics"]["appsPending"] == 1'
out=$(call DELETE "$RMURL/standin/apps/$big")
[[ $out == "200 "*FINISHED* ]] || fail "finish the big app: $out"
check "a finished app's requests are no longer pending" q "$RMURL/ws/v1/cluster/metrics" 'j["clusterMetrics"]["pendingMB"] == 0 and j["clusterMetrics"]["appsCompleted"] == 1'

# ---- graceful decommission ----
echo "# the stand-in's exclude file" >"$EXCLUDE"
echo "$NMHOST" >>"$EXCLUDE"
env HADOOP_CONF_DIR="$work/conf" "$YARN" rmadmin -refreshNodes -g 30 -client >"$work/refresh1.out" 2>&1 ||
    fail "rmadmin -refreshNodes -g 30 -client: $(cat "$work/refresh1.out")"
contains "$work/refresh1.out" "\"decommissioning\": [\"$NODE\"]"
ok "rmadmin -refreshNodes -g 30 -client: exit 0"
check "DECOMMISSIONING with its 2 containers, timeout <= 30 s" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "DECOMMISSIONING" and j["node"]["numContainers"] == 2 and 0 < j["node"]["decommissioningTimeout"] <= 30'
beat=$(q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["lastHealthUpdate"]')
wait_until 10 "it keeps heartbeating while draining" \
    q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["lastHealthUpdate"] > '"$beat"' + 900'
check "still DECOMMISSIONING, 2 containers, NM still running" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "DECOMMISSIONING" and j["node"]["numContainers"] == 2'
alive "$nm1" || fail "the NM exited while draining"
check "metrics: 1 decommissioning, 0 active, capacity still counted" q "$RMURL/ws/v1/cluster/metrics" 'j["clusterMetrics"]["decommissioningNodes"] == 1 and j["clusterMetrics"]["activeNodes"] == 0 and j["clusterMetrics"]["totalMB"] == 8192'
out=$(call DELETE "$RMURL/standin/apps/$app1")
[[ $out == "200 "* ]] || fail "finish the app: $out"
wait_until 10 "the app finished: the node DECOMMISSIONED" \
    q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "DECOMMISSIONED" and j["node"]["numContainers"] == 0'
wait_exit "$nm1" 10
expect_code "the decommissioned NM" 0 "$rc"
contains "$work/nm1.out" "nodemanager stand-in: decommissioned by the ResourceManager; shutting down"
contains "$work/nm1.out" "stopped"
ok "the NM exited 0 when decommissioned"
check "it stays DECOMMISSIONED" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "DECOMMISSIONED"'

# An excluded host is refused at registration.
run_nm refused
wait_exit "$nm_pid" 10
expect_code "an NM on an excluded host" 1 "$rc"
contains "$work/refused.err" "refused the registration"
ok "an NM on an excluded host is refused (exit 1)"

# ---- recommission, LOST and RESYNC ----
: >"$EXCLUDE"
check "rmadmin -refreshNodes (nothing excluded)" env HADOOP_CONF_DIR="$work/conf" "$YARN" rmadmin -refreshNodes
run_nm nm2
nm2=$nm_pid
wait_until 15 "the node RUNNING again (same id re-registers)" \
    q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "RUNNING"'
out=$(call POST "$RMURL/standin/apps" '{"name": "one", "containers": 1, "memoryMB": 512, "vcores": 1}')
app2=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1].split(" ",1)[1])["id"])' "$out")
wait_until 10 "one container on the NM" q "$NMURL/ws/v1/node/containers" 'len(j["containers"]["container"]) == 1'
first=$(q "$NMURL/ws/v1/node/containers" 'j["containers"]["container"][0]["id"]')
echo "$NMHOST" >"$EXCLUDE"
check "rmadmin -refreshNodes -g 60" env HADOOP_CONF_DIR="$work/conf" "$YARN" rmadmin -refreshNodes -g 60
check "DECOMMISSIONING" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "DECOMMISSIONING"'
: >"$EXCLUDE"
env HADOOP_CONF_DIR="$work/conf" "$YARN" rmadmin -refreshNodes -g >"$work/refresh2.out" 2>&1 ||
    fail "refreshNodes: $(cat "$work/refresh2.out")"
contains "$work/refresh2.out" "\"recommissioned\": [\"$NODE\"]"
check "recommissioned: RUNNING" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "RUNNING" and j["node"]["numContainers"] == 1'

kill -STOP "$nm2"
wait_until 10 "a silent node becomes LOST" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "LOST"'
check "its container is pending again" q "$RMURL/ws/v1/cluster/metrics" 'j["clusterMetrics"]["containersPending"] == 1 and j["clusterMetrics"]["pendingMB"] == 512 and j["clusterMetrics"]["lostNodes"] == 1 and j["clusterMetrics"]["totalMB"] == 0'
kill -CONT "$nm2"
wait_until 10 "RESYNC: the node RUNNING again" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "RUNNING"'
wait_until 10 "the lost container replaced by a new one" \
    q "$NMURL/ws/v1/node/containers" '[c["id"] for c in (j["containers"] or {}).get("container", [])] not in ([], ['"$first"'])  and len(j["containers"]["container"]) == 1'
contains "$work/nm2.out" "resync"

# ---- finishing one container ----
cid=$(q "$NMURL/ws/v1/node/containers" 'j["containers"]["container"][0]["id"]' | tr -d '"')
out=$(call POST "$RMURL/standin/nodes/$NODE/containers/$cid/finish")
[[ $out == "200 "* ]] || fail "finish container: $out"
wait_until 10 "a finished container leaves the NM" q "$NMURL/ws/v1/node/containers" 'j == {"containers": None}'
check "and is not pending again" q "$RMURL/ws/v1/cluster/metrics" 'j["clusterMetrics"]["containersPending"] == 0 and j["clusterMetrics"]["containersAllocated"] == 0'
call DELETE "$RMURL/standin/apps/$app2" >/dev/null

# ---- the decommission timeout kills containers ----
out=$(call POST "$RMURL/standin/apps" '{"name": "stuck", "containers": 1, "memoryMB": 1024, "vcores": 2}')
app3=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1].split(" ",1)[1])["id"])' "$out")
wait_until 10 "one container on the NM" q "$NMURL/ws/v1/node/containers" 'len(j["containers"]["container"]) == 1'
echo "$NMHOST" >"$EXCLUDE"
check "rmadmin -refreshNodes -g 1" env HADOOP_CONF_DIR="$work/conf" "$YARN" rmadmin -refreshNodes -g 1
wait_until 10 "DECOMMISSIONED at the timeout" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "DECOMMISSIONED"'
check "its container is pending again" q "$RMURL/ws/v1/cluster/metrics" 'j["clusterMetrics"]["containersPending"] == 1 and j["clusterMetrics"]["decommissionedNodes"] == 1'
wait_exit "$nm2" 10
expect_code "the NM decommissioned at the timeout" 0 "$rc"
ok "the NM exited 0"

# ---- SIGTERM ----
: >"$EXCLUDE"
check "rmadmin -refreshNodes" env HADOOP_CONF_DIR="$work/conf" "$YARN" rmadmin -refreshNodes
run_nm nm3
nm3=$nm_pid
wait_until 15 "the node RUNNING again" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "RUNNING"'
wait_until 10 "the pending container runs on it" q "$NMURL/ws/v1/node/containers" 'len(j["containers"]["container"]) == 1'
t0=$(now_ms)
kill -TERM "$nm3"
wait_exit "$nm3" 5
t1=$(now_ms)
expect_code "the NM on SIGTERM" 0 "$rc"
(((t1 - t0) <= 1000)) || fail "the NM took $((t1 - t0)) ms to exit on SIGTERM"
ok "SIGTERM: exit 0 in $((t1 - t0)) ms"
check "the node SHUTDOWN" q "$RMURL/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "SHUTDOWN" and j["node"]["numContainers"] == 0'
check "metrics: 1 shutdown node, the container pending" q "$RMURL/ws/v1/cluster/metrics" 'j["clusterMetrics"]["shutdownNodes"] == 1 and j["clusterMetrics"]["containersPending"] == 1'
call DELETE "$RMURL/standin/apps/$app3" >/dev/null
check "/standin/state" q "$RMURL/standin/state" 'len(j["nodes"]) == 1 and len(j["apps"]) == 4 and j["exclude"] == []'

# ---- heartbeat edge cases ----
out=$(call POST "$RMURL/standin/nodes/heartbeat" '{"nodeId": "nobody:1", "containers": []}')
[[ $out == "200 "*'"action": "RESYNC"'* ]] || fail "heartbeat of an unknown node: $out"
out=$(call POST "$RMURL/standin/nodes/heartbeat" '{"nodeId": "'"$NODE"'", "containers": "many"}')
[[ $out == "400 "* ]] || fail "heartbeat with a bad body: $out"
out=$(call POST "$RMURL/standin/nodes/heartbeat" '{not json')
[[ $out == "400 "*"not JSON"* ]] || fail "heartbeat that is not JSON: $out"
ok "heartbeats: RESYNC for an unknown node, 400 for bad bodies"

# ---- an NM started before its RM; an RM before Hadoop 3.3 ----
mkdir -p "$work/conf2"
python3 "$work/site.py" "$work/conf2/yarn-site.xml" "${base_props[@]}" \
    "yarn.resourcemanager.webapp.address=127.0.0.1:$rm2_port"
run_nm nm4 HADOOP_CONF_DIR="$work/conf2"
nm4=$nm_pid
wait_until 10 "an NM without its RM retries, saying why" \
    grep -q "cannot register with the ResourceManager at http://127.0.0.1:$rm2_port/standin/nodes/register: .*retrying in 500 ms" "$work/nm4.err"
python3 "$RM" --port "$rm2_port" --exclude-file "$EXCLUDE" --no-node-resource-rest \
    >"$work/rm2.out" 2>"$work/rm2.err" &
rm2=$!
pids+=("$rm2")
wait_until 10 "a second RM stand-in (--no-node-resource-rest) listens" grep -q "listening" "$work/rm2.out"
wait_until 10 "the NM registers once its RM is up" \
    q "http://127.0.0.1:$rm2_port/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "RUNNING"'
out=$(call POST "http://127.0.0.1:$rm2_port/ws/v1/cluster/nodes/$NODE/resource" '{"resource": {"memory": 1, "vCores": 1}}')
[[ $out == "404 "* ]] || fail "--no-node-resource-rest: $out"
ok "--no-node-resource-rest: the REST endpoint answers 404"
check "rmadmin -updateNodeResource still works there" env HADOOP_CONF_DIR="$work/conf2" "$YARN" rmadmin -updateNodeResource "$NODE" memory-mb=2Gi,vcores=3
check "totalResource 2048 MB, 3 vcores" q "http://127.0.0.1:$rm2_port/ws/v1/cluster/nodes/$NODE" 'j["node"]["totalResource"] == {"memory": 2048, "vCores": 3}'
kill -INT "$nm4"
wait_exit "$nm4" 5
expect_code "the NM on SIGINT" 0 "$rc"
check "SIGINT: SHUTDOWN" q "http://127.0.0.1:$rm2_port/ws/v1/cluster/nodes/$NODE" 'j["node"]["state"] == "SHUTDOWN"'
kill -TERM "$rm2"
wait_exit "$rm2" 5
expect_code "the RM stand-in on SIGTERM" 0 "$rc"
ok "the RM stand-in exits 0 on SIGTERM"
rc=0
env HADOOP_CONF_DIR="$work/conf" "$YARN" rmadmin -refreshNodes -g 5 >/dev/null 2>"$work/down.err" || rc=$?
expect_code "rmadmin against a ResourceManager that answers" 0 "$rc"
python3 "$work/site.py" "$work/badconf/yarn-site.xml" "yarn.resourcemanager.webapp.address=127.0.0.1:$rm2_port"
rc=0
env HADOOP_CONF_DIR="$work/badconf" "$YARN" rmadmin -refreshNodes >/dev/null 2>"$work/down.err" || rc=$?
expect_code "rmadmin with no ResourceManager" 1 "$rc"
contains "$work/down.err" "127.0.0.1:$rm2_port"
ok "rmadmin with no ResourceManager: exit 1 naming its address"

echo "selftest passed"
