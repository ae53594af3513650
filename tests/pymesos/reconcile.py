"""pymesos task reconciliation and kill.

Launches a long command task (`sleep 30`), waits for TASK_RUNNING, then
calls driver.reconcileTasks([]) (implicit) and driver.reconcileTasks([task])
(explicit) and after each one waits for an UPDATE of that task with state
TASK_RUNNING and reason REASON_RECONCILIATION; finally kills the task and
waits for TASK_KILLED.

  python reconcile.py --master 127.0.0.1:5050 [--sleep 30]
"""

import json
import sys

from command_task import CommandScheduler
from common import BAD_STATES, arg_parser, log, run, with_scheduler

TASK_ID = "pymesos-reconcile-task"


class ReconcileScheduler(CommandScheduler):
    def __init__(self, sleep):
        super(ReconcileScheduler, self).__init__(
            "sleep %d" % sleep, 0.1, 32.0, task_id=TASK_ID)
        self.running = False
        self.reconciled = []  # states of REASON_RECONCILIATION updates
        self.kill_sent = False
        self.killed = False

    def on_status(self, driver, status):
        if status.task_id.value != self.task_id:
            self.failure = "update for unknown task %s" % status.task_id.value
            return
        state = status.state
        self.states.append(state)
        if status.get("reason") == "REASON_RECONCILIATION":
            self.reconciled.append(state)
            if state != "TASK_RUNNING":
                self.failure = ("reconciliation reported %s, expected "
                                "TASK_RUNNING" % state)
        elif state == "TASK_RUNNING":
            self.running = True
        elif state == "TASK_KILLED" and self.kill_sent:
            self.killed = True
        elif state in BAD_STATES or state == "TASK_FINISHED":
            self.failure = "task reached %s (reason=%s message=%s)%s" % (
                state, status.get("reason"), status.get("message"),
                "" if self.kill_sent else " before it was killed")


def main(args, deadline):
    sched = ReconcileScheduler(args.sleep)
    task_id = dict(value=TASK_ID)

    def reconcile(driver, tasks, kind):
        with sched.cond:
            seen = len(sched.reconciled)
        log("%s reconciliation: reconcileTasks(%s)" % (kind, json.dumps(tasks)))
        driver.reconcileTasks(tasks)
        sched.wait(lambda: len(sched.reconciled) > seen, deadline,
                   "UPDATE TASK_RUNNING/REASON_RECONCILIATION after %s "
                   "reconciliation" % kind)

    def body(driver):
        sched.wait(lambda: sched.running, deadline, "TASK_RUNNING")
        reconcile(driver, [], "implicit")
        reconcile(driver, [dict(task_id=task_id)], "explicit")
        log("killing %s" % TASK_ID)
        with sched.cond:
            sched.kill_sent = True
        driver.killTask(task_id)
        sched.wait(lambda: sched.killed, deadline, "TASK_KILLED")

    with_scheduler(sched, "corral-pymesos-reconcile", args, deadline, body)
    print(json.dumps(dict(task_id=TASK_ID, agent=sched.launched_on,
                          states=sched.states)), flush=True)


if __name__ == "__main__":
    p = arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--sleep", type=int, default=30,
                   help="seconds the task sleeps (default 30)")
    sys.exit(run(main, p.parse_args()))
