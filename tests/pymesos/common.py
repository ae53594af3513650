"""Shared helpers for the pymesos compatibility peers (not a test by itself).

Every peer is run as `python <script> --master HOST:PORT [options]`, prints
progress lines prefixed with its name, exits 0 on success and 1 with a
`FAIL:` line otherwise. A watchdog thread hard-exits (code 124) shortly after
--timeout so that a peer never hangs, whatever pymesos' threads are doing.
"""

import argparse
import getpass
import json
import os
import socket
import sys
import threading
import time
import traceback

from pymesos import MesosSchedulerDriver, Scheduler, decode_data

PROG = os.path.splitext(os.path.basename(sys.argv[0]))[0]
EPS = 1e-6
# States after which a task will not reach the state a peer waits for.
BAD_STATES = {
    "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED",
    "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNREACHABLE", "TASK_UNKNOWN",
}


class Failure(Exception):
    pass


def log(msg):
    print("[%s] %s" % (PROG, msg), flush=True)


def arg_parser(description, master=True):
    p = argparse.ArgumentParser(description=description)
    if master:
        p.add_argument("--master", required=True,
                       help="master address HOST:PORT (or zk://...)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="overall timeout in seconds (default 120)")
    return p


class Deadline(object):
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def remaining(self):
        return self.end - time.monotonic()


def start_watchdog(timeout, grace=15.0):
    def fire():
        log("FAIL: watchdog: still running %.0fs after the %.0fs timeout, "
            "hard exit" % (grace, timeout))
        os._exit(124)

    t = threading.Timer(timeout + grace, fire)
    t.daemon = True
    t.start()


def run(main, args):
    """Run main(args, deadline) and turn its outcome into an exit code.

    pymesos re-raises an exception of its I/O thread in the main thread
    (through its SIGINT handler), so those land here too."""
    start_watchdog(args.timeout)
    try:
        main(args, Deadline(args.timeout))
    except Failure as e:
        log("FAIL: %s" % e)
        return 1
    except BaseException as e:  # incl. KeyboardInterrupt from pymesos' thread
        traceback.print_exc()
        log("FAIL: %s: %s" % (type(e).__name__, e))
        return 1
    log("OK")
    return 0


def scalar(name, value):
    return dict(name=name, type="SCALAR", scalar=dict(value=value))


def offer_scalar(offer, name):
    return sum(r.get("scalar", {}).get("value", 0.0)
               for r in offer.get("resources", [])
               if r.get("name") == name and r.get("type", "SCALAR") == "SCALAR")


def status_data(status):
    """TaskStatus.data is bytes, i.e. base64 in JSON: decode it."""
    data = status.get("data")
    return decode_data(data) if data else b""


def describe(status):
    parts = ["task=%s" % status.task_id.value, "state=%s" % status.state]
    for key in ("reason", "source", "message"):
        if status.get(key):
            parts.append("%s=%s" % (key, status[key]))
    if status.get("agent_id"):
        parts.append("agent=%s" % status.agent_id.value)
    if status.get("data"):
        parts.append("data=%r" % status_data(status))
    return " ".join(parts)


class BaseScheduler(Scheduler):
    """Records registration, errors and status updates under a condition.

    Callbacks run on pymesos' I/O thread; they never raise (a raise would kill
    the driver), they record a failure that wait() reports instead."""

    def __init__(self):
        self.cond = threading.Condition()
        self.framework_id = None
        self.failure = None
        self.updates = []  # every status update received, in order

    def fail(self, msg):
        with self.cond:
            if self.failure is None:
                self.failure = msg
            self.cond.notify_all()

    def wait(self, pred, deadline, what):
        log("waiting for %s" % what)
        with self.cond:
            while True:
                if self.failure is not None:
                    raise Failure(self.failure)
                if pred():
                    return
                left = deadline.remaining()
                if left <= 0:
                    raise Failure("timed out waiting for %s" % what)
                self.cond.wait(min(left, 1.0))

    def poll(self, pred, seconds, deadline, what):
        """Wait up to `seconds` for pred(); return whether it holds. A
        recorded failure or the overall deadline raises."""
        end = min(time.monotonic() + seconds, deadline.end)
        with self.cond:
            while True:
                if self.failure is not None:
                    raise Failure(self.failure)
                if pred():
                    return True
                left = end - time.monotonic()
                if left <= 0:
                    if deadline.remaining() <= 0:
                        raise Failure("timed out waiting for %s" % what)
                    return False
                self.cond.wait(left)

    def registered(self, driver, framework_id, master_info):
        log("registered: framework_id=%s master=%s" % (
            framework_id.value, json.dumps(master_info, sort_keys=True)))
        with self.cond:
            self.framework_id = framework_id.value
            self.cond.notify_all()

    def reregistered(self, driver, master_info):
        log("re-registered with master %s" % json.dumps(master_info))

    def disconnected(self, driver):
        log("disconnected from master (subscription stream closed)")

    def error(self, driver, message):
        self.fail("ERROR event from master: %s" % message)

    def offerRescinded(self, driver, offer_id):
        log("offer rescinded: %s" % offer_id.value)

    def slaveLost(self, driver, agent_id):
        log("agent lost: %s" % agent_id.value)

    def executorLost(self, driver, executor_id, agent_id, status):
        log("executor lost: %s on %s (status %s)" % (
            executor_id.value, agent_id.value, status))

    def statusUpdate(self, driver, status):
        log("status update: %s" % describe(status))
        try:
            with self.cond:
                self.updates.append(status)
                self.on_status(driver, status)
                self.cond.notify_all()
        except Exception as e:  # never let it reach pymesos
            traceback.print_exc()
            self.fail("error handling status update: %r" % e)

    def on_status(self, driver, status):
        """Hook for subclasses, called with self.cond held."""


class OneTaskScheduler(BaseScheduler):
    """Launches one shell command task (`task_id`, 0.1 cpus, 32 MB) on the
    first offer that fits (recording its agent in `self.agent_id`) and
    declines every other offer for an hour."""

    def __init__(self, task_id, command):
        super(OneTaskScheduler, self).__init__()
        self.task_id = task_id
        self.command = command
        self.launched = False
        self.agent_id = None

    def task(self, offer):
        return dict(
            task_id=dict(value=self.task_id),
            agent_id=dict(value=offer.agent_id.value),
            name=self.task_id,
            command=dict(shell=True, value=self.command),
            resources=[scalar("cpus", 0.1), scalar("mem", 32.0)],
        )

    def resourceOffers(self, driver, offers):
        try:
            for offer in offers:
                with self.cond:
                    launch = (not self.launched
                              and offer_scalar(offer, "cpus") + EPS >= 0.1
                              and offer_scalar(offer, "mem") + EPS >= 32)
                    if launch:
                        self.launched = True
                        self.agent_id = offer.agent_id.value
                if launch:
                    driver.launchTasks(offer.id, [self.task(offer)])
                else:
                    driver.declineOffer(offer.id, filters=dict(refuse_seconds=3600))
        except Exception as e:
            traceback.print_exc()
            self.fail("error handling offers: %r" % e)


def framework_info(name):
    return dict(user=getpass.getuser(), name=name,
                hostname=socket.gethostname())


def stop_driver(driver, wait=10.0):
    """driver.stop() (sends TEARDOWN) and join its thread, bounded."""
    log("stopping driver (TEARDOWN)")
    try:
        driver.stop()
    except Exception as e:
        log("driver.stop() raised %r" % e)
    t = threading.Thread(target=driver.join, name="join")
    t.daemon = True
    t.start()
    t.join(wait)
    if t.is_alive():
        log("warning: driver thread did not exit within %.0fs" % wait)


def with_scheduler(sched, name, args, deadline, body, **info):
    """Start an (unmodified) pymesos scheduler driver, wait for SUBSCRIBED,
    run body(driver) and always stop the driver afterwards. Keyword
    arguments are FrameworkInfo fields (failover_timeout, checkpoint)."""
    framework = framework_info(name)
    framework.update(info)
    # timeout= is pymesos' connect deadline: keep it past ours, so that a
    # master that never answers fails with our message, not pymesos'.
    driver = MesosSchedulerDriver(
        sched, framework, args.master, use_addict=True,
        implicit_acknowledgements=True, timeout=args.timeout + 60)
    log("starting scheduler driver against %s" % args.master)
    driver.start()
    try:
        sched.wait(lambda: sched.framework_id is not None, deadline,
                   "SUBSCRIBED (framework registration)")
        return body(driver)
    finally:
        stop_driver(driver)
