#!/usr/bin/env python3
"""Write events to a topic through Corral's eventing service and read them
back, with nothing but Python's standard library.

    python3 python_client.py --api http://127.0.0.1:7080 --token TOKEN --topic orders --count 10

Every request is safe to retry: writes carry ids (the service drops repeats
in a session; readers drop copies by id), reads are numbered and acked.
"""
import argparse
import json
import sys
import urllib.error
import urllib.request
import uuid


class ServiceError(Exception):
    def __init__(self, status, body):
        err = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = err.get("code", "http_error")
        self.message = err.get("message", str(body))
        super().__init__(f"{status} {self.code}: {self.message}")


def call(api, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api.rstrip("/") + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        raise ServiceError(e.code, parsed) from None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--api", required=True, help="http://host:port of an API node")
    p.add_argument("--token", help="bearer token")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=10)
    a = p.parse_args()
    run = uuid.uuid4().hex[:12]

    # Write: one session, one batch; answered once Kafka has the events.
    w = call(a.api, a.token, "POST", "/v1/sessions",
             {"topic": a.topic, "partition": 0, "mode": "readWrite"})
    sid = w["sessionId"]
    events = [{"id": f"py-{run}-{i}", "value": f"hello {i}"} for i in range(a.count)]
    results = call(a.api, a.token, "POST", f"/v1/sessions/{sid}/write", {"events": events})["results"]
    pending = [r["id"] for r in results if r["status"] != "acked"]
    while pending:  # Kafka was slow: ask again for the ones not acked yet.
        results = call(a.api, a.token, "POST", f"/v1/sessions/{sid}/write-status",
                       {"ids": pending})["results"]
        failed = [r for r in results if r["status"] in ("failed", "unknown")]
        if failed:
            raise SystemExit(f"writes not accepted: {failed}")
        pending = [r["id"] for r in results if r["status"] == "pending"]
    call(a.api, a.token, "DELETE", f"/v1/sessions/{sid}")

    # Read partition 0 from the beginning until all of ours were seen.
    r = call(a.api, a.token, "POST", "/v1/sessions",
             {"topic": a.topic, "partition": 0, "mode": "read", "start": "earliest"})
    rid = r["sessionId"]
    wanted = {e["id"] for e in events}
    seen = set()
    for _ in range(200):
        batch = call(a.api, a.token, "POST", f"/v1/sessions/{rid}/read",
                     {"maxEvents": 500, "waitMs": 1000})
        for e in batch["events"]:
            if e.get("id") in wanted and e["id"] not in seen:  # drop copies by id
                seen.add(e["id"])
                print(e["value"])
        if batch["events"]:
            ack = call(a.api, a.token, "POST", f"/v1/sessions/{rid}/ack",
                       {"upTo": batch["events"][-1]["offset"]})
            token = ack["offsetToken"]  # keep it to resume in a new session
        if seen == wanted:
            break
    call(a.api, a.token, "DELETE", f"/v1/sessions/{rid}")
    if seen != wanted:
        raise SystemExit(f"read {len(seen)} of {len(wanted)}")
    print(f"ok: wrote {a.count}, read {len(seen)}")


if __name__ == "__main__":
    try:
        main()
    except ServiceError as e:
        print(f"error: {e.code}: {e.message}", file=sys.stderr)
        sys.exit(1)
