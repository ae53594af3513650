#!/usr/bin/env python3
"""A ResourceManager stand-in: a test double for Corral's YARN bridge tests.

No Hadoop/YARN distribution can be downloaded where these tests run, so this
plays the part of YARN's ResourceManager. It is NOT Apache Hadoop and shares
no code with it. It serves:

* the parts of the ResourceManager REST API the bridge reads, in the JSON
  shapes of Hadoop's "ResourceManager REST API's" document
  (/ws/v1/cluster/info, /metrics, /nodes, /nodes/{id}, /apps, and Hadoop
  3.3+'s POST /ws/v1/cluster/nodes/{id}/resource);
* stand-in-only control endpoints under /standin/ used by the NodeManager
  stand-in (register, heartbeat, unregister), by the rmadmin stand-in
  (refreshNodes, updateNodeResource) and by the tests (apps, state, finish).

See tests/yarn/README.md. Python 3 standard library only.
"""

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

VERSION = "3.4.1-corral-standin"
MAX_BODY = 1 << 20  # 1 MiB

RUNNING = "RUNNING"
DECOMMISSIONING = "DECOMMISSIONING"
DECOMMISSIONED = "DECOMMISSIONED"
LOST = "LOST"
SHUTDOWN = "SHUTDOWN"
NODE_STATES = (RUNNING, DECOMMISSIONING, DECOMMISSIONED, LOST, SHUTDOWN,
               "NEW", "UNHEALTHY", "REBOOTED")
ACTIVE_STATES = (RUNNING, DECOMMISSIONING)

ACCEPTED = "ACCEPTED"
FINISHED = "FINISHED"
APP_STATES = ("NEW", "NEW_SAVING", "SUBMITTED", ACCEPTED, RUNNING, FINISHED,
              "FAILED", "KILLED")


def now_ms():
    return int(time.time() * 1000)


def log(msg):
    stamp = time.strftime("%H:%M:%S", time.localtime())
    sys.stderr.write("rm stand-in %s.%03d %s\n" % (stamp, now_ms() % 1000, msg))
    sys.stderr.flush()


class HttpError(Exception):
    """An answer other than 200: status, Java-ish exception name, message."""

    def __init__(self, status, exception, message):
        super().__init__(message)
        self.status = status
        self.exception = exception
        self.message = message


def bad_request(message):
    return HttpError(400, "BadRequestException", message)


def not_found(message):
    return HttpError(404, "NotFoundException", message)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def want_int(body, key, minimum=None, required=True, default=None):
    if key not in body or body[key] is None:
        if required:
            raise bad_request("%s: required (an integer)" % key)
        return default
    v = body[key]
    if not is_int(v):
        raise bad_request("%s: must be an integer, not %s" % (key, json.dumps(v)))
    if minimum is not None and v < minimum:
        raise bad_request("%s: must be >= %d, not %d" % (key, minimum, v))
    return v


def want_str(body, key):
    v = body.get(key)
    if not isinstance(v, str) or not v:
        raise bad_request("%s: required (a non-empty string)" % key)
    return v


def read_exclude_file(path):
    """Hosts of an exclude file: whitespace-separated names, `#` comments and
    blank lines ignored; a missing file is an empty list. Raises OSError on
    any other failure to read it."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read(MAX_BODY * 4)
    except FileNotFoundError:
        return []
    hosts = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for word in line.split():
            if word not in hosts:
                hosts.append(word)
    return hosts


class Node:
    def __init__(self, node_id, host, rpc_port, http_port, memory, vcores):
        self.id = node_id
        self.host = host
        self.rpc_port = rpc_port
        self.http_port = http_port
        self.memory = memory
        self.vcores = vcores
        self.state = RUNNING
        self.containers = {}  # container id -> Container (running here)
        self.pending_stop = []  # container ids to send in "stop"
        self.last_heartbeat_ms = now_ms()
        self.last_heartbeat_mono = time.monotonic()
        self.decommission_deadline = None  # monotonic seconds

    def used(self):
        mem = sum(c.memory for c in self.containers.values())
        cores = sum(c.vcores for c in self.containers.values())
        return mem, cores

    def fits(self, memory, vcores):
        mem, cores = self.used()
        return mem + memory <= self.memory and cores + vcores <= self.vcores


class Container:
    def __init__(self, cid, app, memory, vcores, node):
        self.id = cid
        self.app = app
        self.memory = memory
        self.vcores = vcores
        self.node = node


class App:
    def __init__(self, app_id, seq, name, containers, memory, vcores):
        self.id = app_id
        self.seq = seq
        self.name = name
        self.pending = containers  # container requests not yet assigned
        self.memory = memory
        self.vcores = vcores
        self.state = ACCEPTED
        self.final_status = "UNDEFINED"
        self.running = {}  # container id -> Container
        self.next_container = 1
        self.started_ms = now_ms()
        self.finished_ms = 0

    def unfinished(self):
        return self.state != FINISHED


class State:
    """The ResourceManager's state; every method is called under `lock`."""

    def __init__(self, exclude_file, expiry_ms, node_resource_rest):
        self.lock = threading.Lock()
        self.started_ms = now_ms()
        self.exclude_file = exclude_file
        self.expiry = expiry_ms / 1000.0
        self.node_resource_rest = node_resource_rest
        self.nodes = {}  # insertion (registration) order
        self.apps = {}  # submission order: FIFO
        self.app_seq = 0
        self.excluded = read_exclude_file(exclude_file)

    # ---- state changes (each logged) ----

    def set_node_state(self, node, state, why):
        if node.state != state:
            log("node %s: %s -> %s (%s)" % (node.id, node.state, state, why))
            node.state = state
        if state != DECOMMISSIONING:
            node.decommission_deadline = None

    def lose_containers(self, node, why):
        """The node's containers are gone; unfinished apps get their
        requests back as pending."""
        for c in list(node.containers.values()):
            self.drop_container(c, back_to_pending=True, why=why)

    def drop_container(self, c, back_to_pending, why):
        node = c.node
        if node is not None:
            node.containers.pop(c.id, None)
        c.node = None
        app = c.app
        app.running.pop(c.id, None)
        again = back_to_pending and app.unfinished()
        if again:
            app.pending += 1
        log("container %s of %s on %s: %s%s" % (
            c.id, app.id, node.id if node else "-", why,
            "; its app asks for it again (pending)" if again else ""))

    def is_excluded(self, node):
        return node.host in self.excluded or node.id in self.excluded

    def sweep(self):
        """Time-driven changes: expiry (LOST), and DECOMMISSIONING nodes that
        are empty or past their deadline (DECOMMISSIONED)."""
        mono = time.monotonic()
        for node in self.nodes.values():
            if node.state in ACTIVE_STATES and mono - node.last_heartbeat_mono > self.expiry:
                self.set_node_state(node, LOST, "no heartbeat for %d ms" % (self.expiry * 1000))
                self.lose_containers(node, "lost with its node")
                node.pending_stop = []
            if node.state == DECOMMISSIONING:
                if not node.containers:
                    self.set_node_state(node, DECOMMISSIONED, "no containers left to drain")
                elif node.decommission_deadline is not None and mono >= node.decommission_deadline:
                    self.set_node_state(node, DECOMMISSIONED, "graceful decommission timed out")
                    self.lose_containers(node, "killed by the decommission timeout")

    def schedule(self, node):
        """Assigns pending containers (apps FIFO) to a RUNNING node while
        they fit; returns the new containers."""
        launched = []
        if node.state != RUNNING:
            return launched
        for app in self.apps.values():
            if not app.unfinished():
                continue
            while app.pending > 0 and node.fits(app.memory, app.vcores):
                cid = "container_%d_%04d_01_%06d" % (self.started_ms, app.seq, app.next_container)
                app.next_container += 1
                app.pending -= 1
                c = Container(cid, app, app.memory, app.vcores, node)
                app.running[cid] = c
                node.containers[cid] = c
                launched.append(c)
                log("container %s of %s: assigned to %s (%d MB, %d vcores)" % (
                    cid, app.id, node.id, c.memory, c.vcores))
                if app.state == ACCEPTED:
                    app.state = RUNNING
                    log("app %s: ACCEPTED -> RUNNING" % app.id)
        return launched

    # ---- control endpoints ----

    def register(self, body):
        node_id = want_str(body, "nodeId")
        host = want_str(body, "host")
        rpc_port = want_int(body, "rpcPort", 0)
        http_port = want_int(body, "httpPort", 0)
        memory = want_int(body, "memoryMB", 0)
        vcores = want_int(body, "vcores", 0)
        node = self.nodes.get(node_id)
        if node is None:
            node = Node(node_id, host, rpc_port, http_port, memory, vcores)
            node.state = "NEW"
            self.nodes[node_id] = node
        else:
            self.lose_containers(node, "its NodeManager registered again")
            node.host, node.rpc_port, node.http_port = host, rpc_port, http_port
            node.memory, node.vcores = memory, vcores
            node.pending_stop = []
        node.last_heartbeat_ms = now_ms()
        node.last_heartbeat_mono = time.monotonic()
        if self.is_excluded(node):
            self.set_node_state(node, DECOMMISSIONED, "registration refused: host is excluded")
            return {"action": "SHUTDOWN", "reason": "disallowed"}
        self.set_node_state(node, RUNNING, "registered with %d MB, %d vcores" % (memory, vcores))
        return {"action": "NORMAL"}

    def heartbeat(self, body):
        node_id = want_str(body, "nodeId")
        reported_list = body.get("containers", [])
        if reported_list is None:
            reported_list = []
        if not isinstance(reported_list, list):
            raise bad_request("containers: must be a list")
        reported = []
        for c in reported_list:
            if not isinstance(c, dict) or not isinstance(c.get("id"), str):
                raise bad_request("containers: each must be an object with a string id")
            reported.append(c["id"])
        node = self.nodes.get(node_id)
        if node is None or node.state in (LOST, SHUTDOWN, "NEW"):
            return {"action": "RESYNC", "launch": [], "stop": []}
        if node.state == DECOMMISSIONED:
            return {"action": "SHUTDOWN", "launch": [], "stop": reported}
        node.last_heartbeat_ms = now_ms()
        node.last_heartbeat_mono = time.monotonic()
        reported_set = set(reported)
        stop = list(node.pending_stop)
        node.pending_stop = []
        # Containers the NodeManager runs that the RM does not place there
        # (finished apps, finished or lost containers): stop them.
        for cid in reported:
            if cid not in node.containers and cid not in stop:
                stop.append(cid)
        # Containers the RM placed there that the NodeManager does not run
        # (the launch never arrived): gone; their apps ask again.
        for cid, c in list(node.containers.items()):
            if cid not in reported_set:
                self.drop_container(c, back_to_pending=True,
                                    why="not reported by its NodeManager")
        launched = self.schedule(node)
        action = "NORMAL"
        if node.state == DECOMMISSIONING and not node.containers:
            self.set_node_state(node, DECOMMISSIONED, "no containers left to drain")
        if node.state == DECOMMISSIONED:
            action = "SHUTDOWN"
        return {
            "action": action,
            "launch": [{"id": c.id, "memoryMB": c.memory, "vcores": c.vcores,
                        "appId": c.app.id} for c in launched],
            "stop": stop,
        }

    def unregister(self, body):
        node_id = want_str(body, "nodeId")
        node = self.nodes.get(node_id)
        if node is None:
            raise not_found("nodeId, %s, is not found" % node_id)
        if node.state in (DECOMMISSIONED, LOST):
            # A decommissioned (or lost) node keeps that state when its
            # NodeManager stops afterwards.
            return {"state": node.state}
        self.lose_containers(node, "its NodeManager stopped")
        node.pending_stop = []
        self.set_node_state(node, SHUTDOWN, "its NodeManager stopped")
        return {"state": node.state}

    def refresh_nodes(self, body):
        graceful = body.get("graceful")
        if graceful is not None and (not is_int(graceful) or graceful < 0):
            raise bad_request("graceful: must be null or an integer >= 0, not %s"
                              % json.dumps(graceful))
        try:
            hosts = read_exclude_file(self.exclude_file)
        except OSError as e:
            raise HttpError(500, "IOException",
                            "cannot read the exclude file %s: %s" % (self.exclude_file, e))
        if hosts != self.excluded:
            log("exclude list: %s" % (", ".join(hosts) or "(empty)"))
        self.excluded = hosts
        decommissioning, decommissioned, recommissioned = [], [], []
        mono = time.monotonic()
        for node in self.nodes.values():
            excluded = self.is_excluded(node)
            if node.state in ACTIVE_STATES and excluded:
                if graceful is None:
                    self.set_node_state(node, DECOMMISSIONED, "refreshNodes (not graceful)")
                    self.lose_containers(node, "killed by a forced decommission")
                    decommissioned.append(node.id)
                else:
                    was = node.state
                    self.set_node_state(node, DECOMMISSIONING,
                                        "refreshNodes -g %d" % graceful)
                    node.decommission_deadline = mono + graceful
                    if was == DECOMMISSIONING:
                        log("node %s: decommission timeout now %d s" % (node.id, graceful))
                    decommissioning.append(node.id)
            elif node.state == DECOMMISSIONING and not excluded:
                self.set_node_state(node, RUNNING, "recommissioned by refreshNodes")
                recommissioned.append(node.id)
        self.sweep()
        for node_id in list(decommissioning):
            if self.nodes[node_id].state == DECOMMISSIONED:
                decommissioning.remove(node_id)
                decommissioned.append(node_id)
        return {"decommissioning": decommissioning, "decommissioned": decommissioned,
                "recommissioned": recommissioned}

    def update_node_resource(self, node_id, memory, vcores):
        node = self.nodes.get(node_id)
        if node is None:
            raise not_found("nodeId, %s, is not found" % node_id)
        if (node.memory, node.vcores) != (memory, vcores):
            log("node %s: totalResource %d MB, %d vcores -> %d MB, %d vcores" % (
                node.id, node.memory, node.vcores, memory, vcores))
        node.memory, node.vcores = memory, vcores
        return {"memory": memory, "vCores": vcores}

    def submit(self, body):
        name = body.get("name", "standin-app")
        if not isinstance(name, str):
            raise bad_request("name: must be a string")
        n = want_int(body, "containers", 0)
        memory = want_int(body, "memoryMB", 1)
        vcores = want_int(body, "vcores", 1)
        self.app_seq += 1
        app_id = "application_%d_%04d" % (self.started_ms, self.app_seq)
        self.apps[app_id] = App(app_id, self.app_seq, name, n, memory, vcores)
        log("app %s (%s): ACCEPTED with %d pending containers of %d MB, %d vcores" % (
            app_id, name, n, memory, vcores))
        return {"id": app_id}

    def finish_app(self, app_id):
        app = self.apps.get(app_id)
        if app is None:
            raise not_found("appId, %s, is not found" % app_id)
        if app.state != FINISHED:
            log("app %s: %s -> FINISHED (SUCCEEDED)" % (app.id, app.state))
            app.state = FINISHED
            app.final_status = "SUCCEEDED"
            app.finished_ms = now_ms()
            app.pending = 0
            for c in list(app.running.values()):
                node = c.node
                self.drop_container(c, back_to_pending=False, why="stopped: its app finished")
                if node is not None and node.state in ACTIVE_STATES:
                    node.pending_stop.append(c.id)
            self.sweep()
        return {"id": app.id, "state": app.state, "finalStatus": app.final_status}

    def finish_container(self, node_id, cid):
        node = self.nodes.get(node_id)
        if node is None:
            raise not_found("nodeId, %s, is not found" % node_id)
        c = node.containers.get(cid)
        if c is None:
            raise not_found("container %s does not run on %s" % (cid, node_id))
        self.drop_container(c, back_to_pending=False, why="finished")
        node.pending_stop.append(cid)
        self.sweep()
        return {"id": cid, "state": "COMPLETE"}

    # ---- views ----

    def node_json(self, node):
        mem, cores = node.used()
        v = {
            "rack": "/default-rack",
            "state": node.state,
            "id": node.id,
            "nodeHostName": node.host,
            "nodeHTTPAddress": "%s:%d" % (node.host, node.http_port),
            "lastHealthUpdate": node.last_heartbeat_ms,
            "version": VERSION,
            "healthReport": "",
            "numContainers": len(node.containers),
            "usedMemoryMB": mem,
            "availMemoryMB": max(0, node.memory - mem),
            "usedVirtualCores": cores,
            "availableVirtualCores": max(0, node.vcores - cores),
            "totalResource": {"memory": node.memory, "vCores": node.vcores},
        }
        if node.state == DECOMMISSIONING and node.decommission_deadline is not None:
            left = node.decommission_deadline - time.monotonic()
            v["decommissioningTimeout"] = max(0, int(math.ceil(left)))
        return v

    def nodes_json(self, states):
        nodes = [self.node_json(n) for n in self.nodes.values()
                 if states is None or n.state in states]
        return {"nodes": {"node": nodes} if nodes else None}

    def app_json(self, app):
        return {
            "id": app.id,
            "name": app.name,
            "user": "corral",
            "queue": "default",
            "state": app.state,
            "finalStatus": app.final_status,
            "allocatedMB": sum(c.memory for c in app.running.values()),
            "allocatedVCores": sum(c.vcores for c in app.running.values()),
            "runningContainers": len(app.running),
            "startedTime": app.started_ms,
            "finishedTime": app.finished_ms,
        }

    def apps_json(self, states):
        apps = [self.app_json(a) for a in self.apps.values()
                if states is None or a.state in states]
        return {"apps": {"app": apps} if apps else None}

    def info_json(self):
        return {"clusterInfo": {
            "id": self.started_ms,
            "startedOn": self.started_ms,
            "state": "STARTED",
            "haState": "ACTIVE",
            "resourceManagerVersion": VERSION,
            "hadoopVersion": VERSION,
        }}

    def metrics_json(self):
        active = [n for n in self.nodes.values() if n.state in ACTIVE_STATES]
        total_mb = sum(n.memory for n in active)
        total_vc = sum(n.vcores for n in active)
        alloc_mb = sum(n.used()[0] for n in active)
        alloc_vc = sum(n.used()[1] for n in active)
        live = [a for a in self.apps.values() if a.unfinished()]
        count = lambda state: sum(1 for n in self.nodes.values() if n.state == state)
        return {"clusterMetrics": {
            "appsSubmitted": len(self.apps),
            "appsCompleted": sum(1 for a in self.apps.values() if a.state == FINISHED),
            "appsPending": sum(1 for a in self.apps.values() if a.state == ACCEPTED),
            "appsRunning": sum(1 for a in self.apps.values() if a.state == RUNNING),
            "appsFailed": 0,
            "appsKilled": 0,
            "reservedMB": 0,
            "availableMB": max(0, total_mb - alloc_mb),
            "allocatedMB": alloc_mb,
            "pendingMB": sum(a.pending * a.memory for a in live),
            "totalMB": total_mb,
            "reservedVirtualCores": 0,
            "availableVirtualCores": max(0, total_vc - alloc_vc),
            "allocatedVirtualCores": alloc_vc,
            "pendingVirtualCores": sum(a.pending * a.vcores for a in live),
            "totalVirtualCores": total_vc,
            "containersAllocated": sum(len(n.containers) for n in active),
            "containersReserved": 0,
            "containersPending": sum(a.pending for a in live),
            "totalNodes": len(self.nodes),
            "activeNodes": count(RUNNING),
            "lostNodes": count(LOST),
            "unhealthyNodes": 0,
            "decommissioningNodes": count(DECOMMISSIONING),
            "decommissionedNodes": count(DECOMMISSIONED),
            "rebootedNodes": 0,
            "shutdownNodes": count(SHUTDOWN),
        }}

    def state_json(self):
        nodes = []
        for n in self.nodes.values():
            v = self.node_json(n)
            v["containers"] = sorted(n.containers)
            v["pendingStop"] = list(n.pending_stop)
            nodes.append(v)
        apps = []
        for a in self.apps.values():
            v = self.app_json(a)
            v["pendingContainers"] = a.pending if a.unfinished() else 0
            v["containerMemoryMB"] = a.memory
            v["containerVCores"] = a.vcores
            v["containers"] = {cid: c.node.id if c.node else None
                               for cid, c in sorted(a.running.items())}
            apps.append(v)
        return {
            "startedOn": self.started_ms,
            "nodes": nodes,
            "apps": apps,
            "exclude": list(self.excluded),
            "excludeFile": self.exclude_file,
            "expiryMs": int(self.expiry * 1000),
            "nodeResourceRest": self.node_resource_rest,
            "metrics": self.metrics_json()["clusterMetrics"],
        }


def parse_states(query, allowed):
    values = query.get("states")
    if not values:
        return None
    states = set()
    for part in ",".join(values).split(","):
        part = part.strip().upper()
        if not part:
            continue
        if part not in allowed:
            raise bad_request("states: invalid state %s (one of %s)" % (part, ", ".join(allowed)))
        states.add(part)
    return states or None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "corral-rm-standin/" + VERSION
    # A stalled client does not hold its thread forever; idle keep-alive
    # connections outlive reqwest's 90 s pool idle time (the client closes).
    timeout = 120
    state = None  # set in main()

    def log_message(self, fmt, *args):
        log("http %s: %s" % (self.address_string(), fmt % args))

    def log_error(self, fmt, *args):
        # An idle keep-alive connection timing out is not worth a line.
        if not fmt.startswith("Request timed out"):
            self.log_message(fmt, *args)

    def log_request(self, code="-", size="-"):
        # Requests are not logged (heartbeats would flood the log); failures are.
        if isinstance(code, int) and code >= 400:
            log("http %s %s -> %d" % (self.command, self.path, code))

    def send_json(self, status, value):
        data = json.dumps(value).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, err):
        self.send_json(err.status, {"RemoteException": {
            "exception": err.exception,
            "message": err.message,
            "javaClassName": "org.apache.hadoop.yarn.webapp." + err.exception
            if err.exception in ("NotFoundException", "BadRequestException")
            else "java.lang.Exception",
        }})
        if err.status != 404:
            log("%s %s: %d %s" % (self.command, self.path, err.status, err.message))

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise HttpError(411, "LengthRequiredException",
                            "a Content-Length is required (no chunked bodies)")
        length = self.headers.get("Content-Length")
        if not length:
            return {}
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise bad_request("bad Content-Length: %r" % length)
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            # Read (and drop) a moderately oversized body before answering,
            # so the client is not cut off mid-send and sees the 413.
            left = n if 0 < n <= MAX_BODY * 8 else 0
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
            raise HttpError(413, "RequestTooLargeException",
                            "request body of %d bytes: the limit is %d" % (n, MAX_BODY))
        raw = self.rfile.read(n) if n else b""
        if len(raw) != n:
            self.close_connection = True
            raise bad_request("request body cut short")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise bad_request("the body is not JSON: %s" % e)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        return body

    def handle_any(self, method):
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        try:
            body = self.read_body() if method in ("POST", "PUT") else {}
            st = self.state
            with st.lock:
                st.sweep()
                status, answer = route(st, method, parts, query, body)
                if method != "GET":
                    st.sweep()
            self.send_json(status, answer)
        except HttpError as e:
            self.send_error_json(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # never leave a client without an answer
            log("internal error on %s %s: %r" % (method, self.path, e))
            try:
                self.send_error_json(HttpError(500, "InternalError", "internal error: %r" % e))
            except OSError:
                self.close_connection = True

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")


def route(st, method, parts, query, body):
    """(status, JSON answer) of one request; raises HttpError."""
    def only(*methods):
        if method not in methods:
            raise HttpError(405, "MethodNotAllowedException",
                            "%s is not allowed on /%s (use %s)" % (
                                method, "/".join(parts), " or ".join(methods)))

    if parts[:3] == ["ws", "v1", "cluster"]:
        rest = parts[3:]
        if rest in ([], ["info"]):
            only("GET")
            return 200, st.info_json()
        if rest == ["metrics"]:
            only("GET")
            return 200, st.metrics_json()
        if rest == ["nodes"]:
            only("GET")
            return 200, st.nodes_json(parse_states(query, NODE_STATES))
        if len(rest) == 2 and rest[0] == "nodes":
            only("GET")
            node = st.nodes.get(rest[1])
            if node is None:
                raise not_found("nodeId, %s, is not found" % rest[1])
            return 200, {"node": st.node_json(node)}
        if len(rest) == 3 and rest[0] == "nodes" and rest[2] == "resource":
            if not st.node_resource_rest:
                raise not_found("no such endpoint: /%s (this stand-in plays a "
                                "ResourceManager older than Hadoop 3.3)" % "/".join(parts))
            only("POST")
            resource = body.get("resource")
            if not isinstance(resource, dict):
                raise bad_request("resource: required (an object with memory and vCores)")
            memory = want_int(resource, "memory", 0)
            vcores = want_int(resource, "vCores", 0)
            want_int(body, "overCommitTimeout", required=False)
            return 200, st.update_node_resource(rest[1], memory, vcores)
        if rest == ["apps"]:
            only("GET")
            return 200, st.apps_json(parse_states(query, APP_STATES))
        if len(rest) == 2 and rest[0] == "apps":
            only("GET")
            app = st.apps.get(rest[1])
            if app is None:
                raise not_found("app with id: %s not found" % rest[1])
            return 200, {"app": st.app_json(app)}
    elif parts[:1] == ["standin"]:
        rest = parts[1:]
        if rest == ["nodes", "register"]:
            only("POST")
            return 200, st.register(body)
        if rest == ["nodes", "heartbeat"]:
            only("POST")
            return 200, st.heartbeat(body)
        if rest == ["nodes", "unregister"]:
            only("POST")
            return 200, st.unregister(body)
        if len(rest) == 5 and rest[0] == "nodes" and rest[2] == "containers" \
                and rest[4] == "finish":
            only("POST")
            return 200, st.finish_container(rest[1], rest[3])
        if rest == ["refreshNodes"]:
            only("POST")
            return 200, st.refresh_nodes(body)
        if rest == ["updateNodeResource"]:
            only("POST")
            node_id = want_str(body, "nodeId")
            memory = want_int(body, "memoryMB", 0)
            vcores = want_int(body, "vcores", 0)
            want_int(body, "overCommitTimeout", required=False)
            return 200, st.update_node_resource(node_id, memory, vcores)
        if rest == ["apps"]:
            only("POST")
            return 200, st.submit(body)
        if len(rest) == 2 and rest[0] == "apps":
            only("DELETE")
            return 200, st.finish_app(rest[1])
        if rest == ["state"]:
            only("GET")
            return 200, st.state_json()
    raise not_found("no such endpoint: %s /%s" % (method, "/".join(parts)))


def main():
    p = argparse.ArgumentParser(
        description="ResourceManager stand-in (a test double, not Apache Hadoop)")
    p.add_argument("--port", type=int, required=True, help="port to listen on (0: any)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--exclude-file", required=True,
                   help="the exclude file re-read on refreshNodes")
    p.add_argument("--expiry-ms", type=int, default=3000,
                   help="a node without a heartbeat for this long is LOST")
    p.add_argument("--no-node-resource-rest", action="store_true",
                   help="answer 404 on POST /ws/v1/cluster/nodes/{id}/resource "
                        "(a ResourceManager older than Hadoop 3.3)")
    args = p.parse_args()
    if not 0 <= args.port <= 65535:
        p.error("--port: %d is not a port" % args.port)
    if args.expiry_ms <= 0:
        p.error("--expiry-ms must be > 0")
    try:
        state = State(os.path.abspath(args.exclude_file), args.expiry_ms,
                      not args.no_node_resource_rest)
    except OSError as e:
        sys.stderr.write("rm stand-in: cannot read the exclude file %s: %s\n"
                         % (args.exclude_file, e))
        return 2
    Handler.state = state
    try:
        server = ThreadingHTTPServer((args.host, args.port), Handler)
    except OSError as e:
        sys.stderr.write("rm stand-in: cannot listen on %s:%d: %s\n" % (args.host, args.port, e))
        return 3
    server.daemon_threads = True

    stop = threading.Event()

    def ticker():
        while not stop.wait(0.2):
            with state.lock:
                state.sweep()

    threading.Thread(target=ticker, name="sweep", daemon=True).start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                     name="http", daemon=True).start()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, port = server.server_address[:2]
    sys.stdout.write("rm stand-in listening on %s:%d\n" % (host, port))
    sys.stdout.flush()
    log("started (exclude file %s: %s; node expiry %d ms; node resource REST %s)" % (
        state.exclude_file, ", ".join(state.excluded) or "empty", args.expiry_ms,
        "on" if state.node_resource_rest else "off"))
    while not stop.wait(0.5):
        pass
    log("stopping")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
