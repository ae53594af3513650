"""pymesos custom executor, started by the agent for framework.py's tasks.

Uses only the environment an agent gives an executor (MESOS_AGENT_ENDPOINT,
MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, ...) through an unmodified pymesos
MesosExecutorDriver. For each LAUNCH it sends TASK_RUNNING, then TASK_FINISHED
whose base64 `data` echoes the task's decoded TaskInfo.data as JSON
{"task_id", "received", "pid", "hostname"}. KILL answers TASK_KILLED. Exits 0
on SHUTDOWN (pymesos then kills its own process group after the grace
period), 1 when the driver dies or nothing shut it down within --timeout.
"""

import json
import os
import socket
import sys
import threading

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data

from common import Failure, arg_parser, log, run

REQUIRED_ENV = ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID",
                "MESOS_EXECUTOR_ID")


class TestExecutor(Executor):
    def __init__(self):
        self.shutdown_requested = threading.Event()
        self.launched = 0

    def registered(self, driver, executor_info, framework_info, agent_info):
        log("registered: executor=%s framework=%s agent=%s (%s)" % (
            executor_info.executor_id.value, framework_info.id.value,
            agent_info.get("id", {}).get("value"),
            agent_info.get("hostname")))

    def reregistered(self, driver, agent_info):
        log("re-registered with agent %s" % agent_info.get("hostname"))

    def disconnected(self, driver):
        log("disconnected from agent")

    def launchTask(self, driver, task):
        # Runs on pymesos' I/O thread; an exception here kills the driver,
        # which makes this process exit non-zero (and the agent notices).
        task_id = task.task_id.value
        received = decode_data(task.data).decode("utf-8") if task.get(
            "data") else None
        self.launched += 1
        log("LAUNCH %s (data=%r)" % (task_id, received))
        driver.sendStatusUpdate(dict(
            task_id=dict(value=task_id), state="TASK_RUNNING",
            message="running in pymesos executor pid %d" % os.getpid()))
        echo = dict(task_id=task_id, received=received, pid=os.getpid(),
                    hostname=socket.gethostname())
        driver.sendStatusUpdate(dict(
            task_id=dict(value=task_id), state="TASK_FINISHED",
            message="finished by pymesos executor",
            data=encode_data(json.dumps(echo).encode("utf-8"))))
        log("sent TASK_RUNNING and TASK_FINISHED for %s" % task_id)

    def killTask(self, driver, task_id):
        log("KILL %s" % task_id.value)
        driver.sendStatusUpdate(dict(
            task_id=dict(value=task_id.value), state="TASK_KILLED",
            message="killed by request"))

    def frameworkMessage(self, driver, message):
        log("framework message: %r" % decode_data(message))

    def shutdown(self, driver):
        log("SHUTDOWN (or lost agent without checkpointing)")
        self.shutdown_requested.set()

    def error(self, driver, message):
        log("ERROR event from agent: %s" % message)


def main(args, deadline):
    env = {k: v for k, v in sorted(os.environ.items())
           if k.startswith("MESOS_")}
    log("environment: %s" % json.dumps(env))
    missing = [k for k in REQUIRED_ENV if not os.environ.get(k)]
    if missing:
        raise Failure("executor environment lacks %s" % ", ".join(missing))

    executor = TestExecutor()
    driver = MesosExecutorDriver(executor, use_addict=True,
                                 timeout=args.timeout)
    log("subscribing to agent %s" % os.environ["MESOS_AGENT_ENDPOINT"])
    driver.start()
    try:
        while not executor.shutdown_requested.is_set():
            if driver.aborted:
                raise Failure("executor driver stopped without SHUTDOWN")
            if deadline.remaining() <= 0:
                raise Failure("no SHUTDOWN within %.0fs (%d task(s) "
                              "launched)" % (args.timeout, executor.launched))
            executor.shutdown_requested.wait(0.5)
    finally:
        driver.stop()
    log("shut down after %d task(s)" % executor.launched)


if __name__ == "__main__":
    p = arg_parser(__doc__.split("\n\n")[0], master=False)
    sys.exit(run(main, p.parse_args()))
