#!/usr/bin/env python3
"""The `yarn` command stand-in: a test double for Corral's YARN bridge tests.

No Hadoop/YARN distribution can be downloaded where these tests run, so
`$YARN_HOME/bin/yarn` (tests/yarn/home/bin/yarn) runs this instead. It is NOT
Apache Hadoop and shares no code with it. It implements:

* `yarn nodemanager`: a NodeManager stand-in. It checks the configuration the
  bridge generated (yarn-site.xml in $HADOOP_CONF_DIR and the -D options of
  $YARN_NODEMANAGER_OPTS), binds the NodeManager's four ports, serves
  /ws/v1/node/info and /ws/v1/node/containers (shapes of Hadoop's
  "NodeManager REST API's" document) and registers and heartbeats with the
  ResourceManager stand-in (tests/yarn/rm_standin.py, its /standin/ API).
* `yarn rmadmin -refreshNodes [-g|-graceful [secs]] [-client|-server]` and
  `yarn rmadmin -updateNodeResource <NodeID> <MemSize> <vCores> [timeout]`,
  sent to the ResourceManager stand-in.
* `yarn version`.

Python 3 standard library only. See tests/yarn/README.md.
"""

import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

VERSION = "3.4.1-corral-standin"
MAX_ANSWER = 1 << 20  # 1 MiB
MAX_SITE = 4 << 20
CALL_TIMEOUT = 2.0  # every HTTP call
HEARTBEAT = 0.3
REGISTER_RETRY = 0.5
NM = "nodemanager stand-in"
RMADMIN = "rmadmin stand-in"

USAGE = """Usage: yarn COMMAND   (Corral's YARN stand-in for tests, not Apache Hadoop)
  yarn nodemanager
  yarn rmadmin -refreshNodes [-g|-graceful [timeout in seconds]] [-client|-server]
  yarn rmadmin -updateNodeResource <NodeID> <MemSize> <vCores> [OvercommitTimeout]
  yarn rmadmin -updateNodeResource <NodeID> memory-mb=<MB>,vcores=<n> [OvercommitTimeout]
  yarn version
"""


def now_ms():
    return int(time.time() * 1000)


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def err(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class ConfigError(Exception):
    pass


# ---------------------------------------------------------------- config


def read_site(conf_dir):
    """The properties of $HADOOP_CONF_DIR/yarn-site.xml, in order (a later
    duplicate wins). Raises ConfigError."""
    if not conf_dir:
        raise ConfigError("HADOOP_CONF_DIR is not set")
    path = os.path.join(conf_dir, "yarn-site.xml")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SITE + 1)
    except OSError as e:
        raise ConfigError("cannot read %s: %s" % (path, e.strerror or e))
    if len(raw) > MAX_SITE:
        raise ConfigError("%s: larger than %d bytes" % (path, MAX_SITE))
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise ConfigError("%s: not XML: %s" % (path, e))
    if root.tag != "configuration":
        raise ConfigError("%s: the root element is <%s>, not <configuration>" % (path, root.tag))
    props = {}
    for i, prop in enumerate(root.findall("property")):
        name = (prop.findtext("name") or "").strip()
        if not name:
            raise ConfigError("%s: property #%d has no <name>" % (path, i + 1))
        props[name] = (prop.findtext("value") or "").strip()
    return props


def parse_opts(text):
    """The -Dname=value options of a JVM options string (others ignored)."""
    opts = {}
    for word in (text or "").split():
        if word.startswith("-D") and len(word) > 2:
            name, _, value = word[2:].partition("=")
            opts[name] = value
    return opts


def parse_host_port(value):
    """(host, port) of `host:port`, port 1..65535; raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("%r is not host:port" % value)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("%r: the port must be 1..65535" % value)
    return host, int(port)


def rm_web_address(props):
    """`host:port` of the ResourceManager's web app: the
    yarn.resourcemanager.webapp.address property, else
    ${yarn.resourcemanager.hostname}:8088. Raises ConfigError."""
    rm_host = props.get("yarn.resourcemanager.hostname", "")
    addr = props.get("yarn.resourcemanager.webapp.address", "")
    if addr:
        try:
            host, port = parse_host_port(addr)
        except ValueError as e:
            raise ConfigError("yarn.resourcemanager.webapp.address: %s" % e)
        if host == "0.0.0.0":  # a wildcard bind address: reach it by name
            host = rm_host or "127.0.0.1"
        return "%s:%d" % (host, port)
    if rm_host:
        return "%s:8088" % rm_host
    raise ConfigError("neither yarn.resourcemanager.webapp.address nor "
                      "yarn.resourcemanager.hostname is set")


# ------------------------------------------------------------------ HTTP


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxies


def call(method, url, body=None, timeout=CALL_TIMEOUT):
    """(status, JSON answer or text) of one call, or (None, why) when there
    was no answer."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "Accept": "application/json"})
    try:
        try:
            with _opener.open(req, timeout=timeout) as r:
                status, raw = r.status, r.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as e:
            status = e.code
            try:
                raw = e.read(MAX_ANSWER + 1)
            finally:
                e.close()
    except urllib.error.URLError as e:
        return None, str(e.reason)
    except (OSError, http.client.HTTPException, ValueError) as e:
        return None, str(e) or e.__class__.__name__
    if len(raw) > MAX_ANSWER:
        return status, "(an answer larger than %d bytes)" % MAX_ANSWER
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def describe(answer):
    """A one-line account of an error answer."""
    if isinstance(answer, dict):
        remote = answer.get("RemoteException")
        if isinstance(remote, dict) and remote.get("message"):
            return str(remote["message"])
        return json.dumps(answer)
    return str(answer).strip()[:500]


# ----------------------------------------------------------- nodemanager

REQUIRED = (
    "yarn.resourcemanager.hostname",
    "yarn.nodemanager.hostname",
    "yarn.nodemanager.resource.cpu-vcores",
    "yarn.nodemanager.resource.memory-mb",
    "yarn.nodemanager.address",
    "yarn.nodemanager.localizer.address",
    "yarn.nodemanager.webapp.address",
    "mapreduce.shuffle.port",
    "yarn.nodemanager.aux-services",
    "yarn.nodemanager.aux-services.mapreduce_shuffle.class",
)


def check_nm_config(props, opts):
    """The NodeManager's settings, or ConfigError naming every problem."""
    problems = []
    for name in REQUIRED:
        if not props.get(name):
            problems.append("%s is not set in yarn-site.xml" % name)
    cfg = {}
    for key, name in (("vcores", "yarn.nodemanager.resource.cpu-vcores"),
                      ("memory", "yarn.nodemanager.resource.memory-mb")):
        value = props.get(name)
        if value:
            if re.fullmatch(r"\d+", value):
                cfg[key] = int(value)
            else:
                problems.append("%s=%r is not an integer >= 0" % (name, value))
    for key, name in (("rpc", "yarn.nodemanager.address"),
                      ("localizer", "yarn.nodemanager.localizer.address"),
                      ("webapp", "yarn.nodemanager.webapp.address")):
        value = props.get(name)
        if value:
            try:
                cfg[key] = parse_host_port(value)[1]
            except ValueError as e:
                problems.append("%s: %s" % (name, e))
    shuffle = props.get("mapreduce.shuffle.port")
    if shuffle:
        if re.fullmatch(r"\d+", shuffle) and 1 <= int(shuffle) <= 65535:
            cfg["shuffle"] = int(shuffle)
        else:
            problems.append("mapreduce.shuffle.port=%r is not a port (an integer 1..65535)"
                            % shuffle)
    aux = props.get("yarn.nodemanager.aux-services")
    if aux and "mapreduce_shuffle" not in [s.strip() for s in aux.split(",")]:
        problems.append("yarn.nodemanager.aux-services=%r does not contain mapreduce_shuffle"
                        % aux)
    for name, value in sorted(opts.items()):
        if name in props and props[name] != value.strip():
            problems.append("%s is %r in YARN_NODEMANAGER_OPTS but %r in yarn-site.xml"
                            % (name, value, props[name]))
    for name in ("yarn.nodemanager.resource.cpu-vcores", "yarn.nodemanager.resource.memory-mb"):
        if name not in opts:
            problems.append("YARN_NODEMANAGER_OPTS has no -D%s=..." % name)
    try:
        cfg["rm"] = rm_web_address(props)
    except ConfigError as e:
        problems.append(str(e))
    if problems:
        raise ConfigError("; ".join(problems))
    cfg["host"] = props["yarn.nodemanager.hostname"]
    return cfg


class NodeManager:
    def __init__(self, cfg, props, opts):
        self.cfg = cfg
        self.props = props
        self.opts = opts
        self.node_id = "%s:%d" % (cfg["host"], cfg["rpc"])
        self.rm = "http://%s" % cfg["rm"]
        self.lock = threading.Lock()
        self.containers = {}  # id -> {"id", "memoryMB", "vcores", "appId"}
        self.last_update_ms = now_ms()
        self.done = threading.Event()
        self.exit_code = 0
        self.signalled = False

    def finish(self, code):
        if not self.done.is_set():
            self.exit_code = code
            self.done.set()

    # -- web app --

    def info_json(self):
        return {"nodeInfo": {
            "id": self.node_id,
            "nodeHostName": self.cfg["host"],
            "healthReport": "",
            "nodeHealthy": True,
            "totalVmemAllocatedContainersMB": self.cfg["memory"],
            "totalPmemAllocatedContainersMB": self.cfg["memory"],
            "totalVCoresAllocatedContainers": self.cfg["vcores"],
            "lastNodeUpdateTime": self.last_update_ms,
            "hadoopVersion": VERSION,
            "nodeManagerVersion": VERSION,
            "nodeManagerBuildVersion": "corral NodeManager stand-in",
        }}

    def container_json(self, c):
        return {
            "id": c["id"],
            "state": "RUNNING",
            "exitCode": -1000,
            "diagnostics": "",
            "user": "corral",
            "totalMemoryNeededMB": c["memoryMB"],
            "totalVCoresNeeded": c["vcores"],
            "containerLogsLink": "",
            "nodeId": self.node_id,
        }

    def containers_json(self):
        with self.lock:
            cs = [self.container_json(c) for c in self.containers.values()]
        return {"containers": {"container": cs} if cs else None}

    # -- ResourceManager --

    def register(self):
        """Registers (retrying every 500 ms); False when refused or
        stopping."""
        body = {"nodeId": self.node_id, "host": self.cfg["host"], "rpcPort": self.cfg["rpc"],
                "httpPort": self.cfg["webapp"], "memoryMB": self.cfg["memory"],
                "vcores": self.cfg["vcores"]}
        url = self.rm + "/standin/nodes/register"
        while not self.done.is_set():
            status, answer = call("POST", url, body)
            if status == 200 and isinstance(answer, dict):
                action = answer.get("action")
                if action == "NORMAL":
                    self.last_update_ms = now_ms()
                    out("%s: registered with the ResourceManager at %s as %s (%d MB, %d vcores)"
                        % (NM, self.rm, self.node_id, self.cfg["memory"], self.cfg["vcores"]))
                    return True
                if action == "SHUTDOWN":
                    err("%s: the ResourceManager at %s refused the registration of %s (%s); "
                        "exiting" % (NM, self.rm, self.node_id, answer.get("reason", "")))
                    self.finish(1)
                    return False
                why = "unexpected answer %s" % json.dumps(answer)[:300]
            elif status is None:
                why = answer
            else:
                why = "HTTP %d: %s" % (status, describe(answer))
            err("%s: cannot register with the ResourceManager at %s: %s; retrying in 500 ms"
                % (NM, url, why))
            self.done.wait(REGISTER_RETRY)
        return False

    def heartbeat_once(self):
        """One heartbeat: None when answered, else why not."""
        with self.lock:
            reported = [{"id": c["id"], "memoryMB": c["memoryMB"], "vcores": c["vcores"]}
                        for c in self.containers.values()]
        status, answer = call("POST", self.rm + "/standin/nodes/heartbeat",
                              {"nodeId": self.node_id, "containers": reported})
        if status is None:
            return answer
        if status != 200 or not isinstance(answer, dict):
            return "HTTP %d: %s" % (status, describe(answer))
        self.last_update_ms = now_ms()
        action = answer.get("action")
        stop = answer.get("stop") or []
        launch = answer.get("launch") or []
        with self.lock:
            for cid in stop:
                if self.containers.pop(cid, None) is not None:
                    out("%s: container %s stopped" % (NM, cid))
            for c in launch:
                if not isinstance(c, dict) or not isinstance(c.get("id"), str):
                    continue
                if c["id"] in self.containers:
                    continue
                self.containers[c["id"]] = {
                    "id": c["id"],
                    "memoryMB": int(c.get("memoryMB") or 0),
                    "vcores": int(c.get("vcores") or 0),
                    "appId": c.get("appId"),
                }
                out("%s: container %s launched (%s, %s MB, %s vcores)"
                    % (NM, c["id"], c.get("appId"), c.get("memoryMB"), c.get("vcores")))
        if action == "SHUTDOWN":
            out("%s: decommissioned by the ResourceManager; shutting down" % NM)
            self.finish(0)
        elif action == "RESYNC":
            out("%s: the ResourceManager asks for a resync; registering again" % NM)
            self.register()
        return None

    def run(self):
        """The registration and heartbeat loop (a thread)."""
        try:
            if not self.register():
                return
            failures = 0
            next_beat = time.monotonic()
            while not self.done.is_set():
                why = self.heartbeat_once()
                if why is None:
                    if failures:
                        out("%s: heartbeats answered again after %d failures" % (NM, failures))
                    failures = 0
                else:
                    failures += 1
                    if failures == 1 or failures % 20 == 0:
                        err("%s: heartbeat to %s failed (%d in a row): %s"
                            % (NM, self.rm, failures, why))
                next_beat += HEARTBEAT
                delay = next_beat - time.monotonic()
                if delay < 0:
                    next_beat = time.monotonic()
                    delay = 0
                self.done.wait(delay)
        except Exception as e:  # a bug: say so and stop, never hang
            err("%s: internal error in the heartbeat loop: %r" % (NM, e))
            self.finish(1)

    def unregister(self):
        status, answer = call("POST", self.rm + "/standin/nodes/unregister",
                              {"nodeId": self.node_id})
        if status == 200:
            out("%s: unregistered from the ResourceManager" % NM)
        else:
            err("%s: could not unregister from %s: %s"
                % (NM, self.rm, answer if status is None else
                   "HTTP %d: %s" % (status, describe(answer))))


def web_handler(nm):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "corral-nm-standin/" + VERSION
        timeout = 120  # as the RM stand-in: over reqwest's 90 s pool idle time

        def log_message(self, fmt, *args):
            pass  # requests are not logged

        def send_json(self, status, value):
            data = json.dumps(value).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def not_found(self, message):
            self.send_json(404, {"RemoteException": {
                "exception": "NotFoundException", "message": message,
                "javaClassName": "org.apache.hadoop.yarn.webapp.NotFoundException"}})

        def do_GET(self):
            try:
                parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
                if parts in (["ws", "v1", "node"], ["ws", "v1", "node", "info"]):
                    self.send_json(200, nm.info_json())
                elif parts == ["ws", "v1", "node", "containers"]:
                    self.send_json(200, nm.containers_json())
                elif len(parts) == 5 and parts[:4] == ["ws", "v1", "node", "containers"]:
                    with nm.lock:
                        c = nm.containers.get(parts[4])
                        v = nm.container_json(c) if c else None
                    if v is None:
                        self.not_found("container %s is not on this node" % parts[4])
                    else:
                        self.send_json(200, {"container": v})
                else:
                    self.not_found("no such endpoint: GET %s" % self.path)
            except OSError:
                self.close_connection = True

        def do_POST(self):
            self.close_connection = True
            self.send_json(405, {"RemoteException": {
                "exception": "MethodNotAllowedException",
                "message": "the NodeManager stand-in's web app is read-only",
                "javaClassName": "java.lang.Exception"}})

        do_PUT = do_POST
        do_DELETE = do_POST

    return Handler


def accept_and_close(sock):
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        try:
            conn.close()
        except OSError:
            pass


def nodemanager(args):
    if args:
        err("%s: unexpected arguments: %s" % (NM, " ".join(args)))
        sys.stderr.write(USAGE)
        return 1
    try:
        props = read_site(os.environ.get("HADOOP_CONF_DIR", ""))
        if "YARN_NODEMANAGER_OPTS" not in os.environ:
            raise ConfigError("YARN_NODEMANAGER_OPTS is not set")
        opts = parse_opts(os.environ["YARN_NODEMANAGER_OPTS"])
        cfg = check_nm_config(props, opts)
    except ConfigError as e:
        err("%s: bad configuration: %s" % (NM, e))
        return 2

    nm = NodeManager(cfg, props, opts)
    # Signals first: a SIGTERM while binding or registering still unregisters.
    def on_signal(signum, _frame):
        nm.signalled = True
        nm.finish(0)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sockets = []
    server = None
    for which in ("rpc", "localizer", "webapp", "shuffle"):
        port = cfg[which]
        try:
            if which == "webapp":
                server = ThreadingHTTPServer(("0.0.0.0", port), web_handler(nm),
                                             bind_and_activate=False)
                server.daemon_threads = True
                try:
                    server.server_bind()
                    server.server_activate()
                except OSError:
                    server.server_close()
                    raise
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("0.0.0.0", port))
                    s.listen(16)
                except OSError:
                    s.close()
                    raise
                sockets.append((which, s))
        except OSError as e:
            err("%s: cannot bind %s port %d: %s" % (NM, which, port, e))
            return 3
    for which, s in sockets:
        threading.Thread(target=accept_and_close, args=(s,), name=which, daemon=True).start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                     name="webapp", daemon=True).start()

    sandbox = os.environ.get("MESOS_SANDBOX") or "."
    record = os.path.join(sandbox, "nm-standin.json")
    try:
        tmp = record + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"properties": props, "opts": opts,
                       "ports": {k: cfg[k] for k in ("rpc", "localizer", "webapp", "shuffle")},
                       "nodeId": nm.node_id}, f, indent=2, sort_keys=True)
        os.replace(tmp, record)
    except OSError as e:
        err("%s: cannot write %s: %s" % (NM, record, e))
        return 1

    out("%s: started as %s (%d MB, %d vcores; ports rpc %d, localizer %d, webapp %d, "
        "shuffle %d; ResourceManager %s)" % (
            NM, nm.node_id, cfg["memory"], cfg["vcores"], cfg["rpc"], cfg["localizer"],
            cfg["webapp"], cfg["shuffle"], nm.rm))
    threading.Thread(target=nm.run, name="heartbeat", daemon=True).start()
    while not nm.done.wait(0.2):
        pass
    if nm.signalled:
        out("%s: stopping (signal)" % NM)
        nm.unregister()
    return nm.exit_code


# ---------------------------------------------------------------- rmadmin


def rm_url():
    props = read_site(os.environ.get("HADOOP_CONF_DIR", ""))
    return "http://%s" % rm_web_address(props)


def admin_call(what, path, body):
    try:
        base = rm_url()
    except ConfigError as e:
        err("%s: bad configuration: %s" % (RMADMIN, e))
        return 1
    status, answer = call("POST", base + path, body)
    if status == 200:
        out(json.dumps(answer, sort_keys=True))
        return 0
    if status is None:
        err("%s: %s: cannot reach the ResourceManager at %s: %s" % (RMADMIN, what, base, answer))
    else:
        err("%s: %s failed at the ResourceManager at %s: HTTP %d: %s"
            % (RMADMIN, what, base, status, describe(answer)))
    return 1


def usage_error(message):
    err("%s: %s" % (RMADMIN, message))
    sys.stderr.write(USAGE)
    return 1


def refresh_nodes(args):
    graceful = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-g", "-graceful"):
            graceful = 3600  # Hadoop's default graceful decommission timeout
            if i + 1 < len(args) and re.fullmatch(r"-?\d+", args[i + 1]):
                secs = int(args[i + 1])
                i += 1
                if secs == -1:
                    graceful = 2 ** 31 - 1  # Hadoop: -1 is no timeout
                elif secs < 0:
                    return usage_error("-refreshNodes: bad timeout %d" % secs)
                else:
                    graceful = secs
        elif a in ("-client", "-server"):
            # Hadoop's -client mode makes the command itself wait until the
            # nodes are decommissioned (forcing it at the timeout); -server
            # leaves that to the ResourceManager. The stand-in returns at once
            # in both modes: its ResourceManager tracks the timeout.
            pass
        else:
            return usage_error("-refreshNodes: unknown option %s" % a)
        i += 1
    return admin_call("refreshNodes", "/standin/refreshNodes", {"graceful": graceful})


def parse_resource_types(text):
    """memory-mb=<n>[Mi|Gi],vcores=<n>: (memory MB, vcores) or None."""
    memory = vcores = None
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return None
        name = name.strip()
        value = value.strip()
        m = re.fullmatch(r"(\d+)(Mi|Gi|M|G)?", value)
        if not m:
            return None
        n = int(m.group(1)) * (1024 if m.group(2) in ("Gi", "G") else 1)
        if name in ("memory-mb", "memory"):
            memory = n
        elif name == "vcores":
            vcores = n
    if memory is None or vcores is None:
        return None
    return memory, vcores


def update_node_resource(args):
    if len(args) not in (2, 3, 4):
        return usage_error("-updateNodeResource: wrong number of arguments")
    node_id = args[0]
    try:
        parse_host_port(node_id)
    except ValueError:
        return usage_error("-updateNodeResource: NodeID %r is not host:port" % node_id)
    timeout = None
    if len(args) >= 3 and "=" not in args[1]:
        if not (re.fullmatch(r"\d+", args[1]) and re.fullmatch(r"\d+", args[2])):
            return usage_error("-updateNodeResource: MemSize and vCores must be integers >= 0")
        memory, vcores = int(args[1]), int(args[2])
        rest = args[3:]
    else:
        parsed = parse_resource_types(args[1])
        if parsed is None:
            return usage_error("-updateNodeResource: bad resources %r" % args[1])
        memory, vcores = parsed
        rest = args[2:]
    if len(rest) > 1:
        return usage_error("-updateNodeResource: too many arguments")
    if rest:
        if not re.fullmatch(r"-?\d+", rest[0]):
            return usage_error("-updateNodeResource: OvercommitTimeout must be an integer")
        timeout = int(rest[0])
    body = {"nodeId": node_id, "memoryMB": memory, "vcores": vcores}
    if timeout is not None:
        body["overCommitTimeout"] = timeout
    return admin_call("updateNodeResource", "/standin/updateNodeResource", body)


def rmadmin(args):
    if not args:
        return usage_error("no rmadmin command")
    if args[0] == "-refreshNodes":
        return refresh_nodes(args[1:])
    if args[0] == "-updateNodeResource":
        return update_node_resource(args[1:])
    return usage_error("unsupported rmadmin command %s" % args[0])


def main(argv):
    if not argv:
        sys.stderr.write(USAGE)
        return 1
    command, args = argv[0], argv[1:]
    if command == "nodemanager":
        return nodemanager(args)
    if command == "rmadmin":
        return rmadmin(args)
    if command == "version" and not args:
        out("Hadoop %s" % VERSION)
        out("This is Corral's YARN stand-in for tests, not Apache Hadoop")
        return 0
    err("yarn stand-in: unsupported command: %s" % " ".join(argv))
    sys.stderr.write(USAGE)
    return 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: no waiting on the daemon threads (listeners, web app).
    os._exit(code)
