"""pymesos framework that lives through a master failover.

Given a `zk://` master URL, the unmodified pymesos driver finds the leading
master through ZooKeeper (kazoo), launches one long task and prints
`{"event": "running", "master": ...}` once it runs. The test then kills the
leading master; pymesos sees the leader's znode go, finds the new leader,
re-subscribes with the same FrameworkID, and this peer reconciles the task
(it must still be TASK_RUNNING), kills it and prints a JSON summary.

  python failover.py --master zk://127.0.0.1:2181/corral
"""

import json
import sys

from common import (
    OneTaskScheduler, arg_parser, run, with_scheduler,
)

TASK_ID = "pymesos-ha-task"


class FailoverScheduler(OneTaskScheduler):
    def __init__(self):
        super(FailoverScheduler, self).__init__(TASK_ID, "sleep 300")
        self.masters = []
        self.states = []
        self.reconciled = None

    def registered(self, driver, framework_id, master_info):
        super(FailoverScheduler, self).registered(driver, framework_id, master_info)
        with self.cond:
            self.masters.append("%s:%s" % (master_info.hostname, master_info.port))
            self.cond.notify_all()

    def reregistered(self, driver, master_info):
        super(FailoverScheduler, self).reregistered(driver, master_info)
        with self.cond:
            self.masters.append("%s:%s" % (master_info.hostname, master_info.port))
            self.cond.notify_all()

    def on_status(self, driver, status):
        self.states.append(status.state)
        if status.get("reason") == "REASON_RECONCILIATION":
            self.reconciled = status.state
        if status.state == "TASK_RUNNING" and self.states.count("TASK_RUNNING") == 1:
            print(json.dumps(dict(event="running", master=self.masters[-1])), flush=True)


def main(args, deadline):
    sched = FailoverScheduler()

    def body(driver):
        sched.wait(lambda: "TASK_RUNNING" in sched.states, deadline, "TASK_RUNNING")
        sched.wait(lambda: len(sched.masters) >= 2, deadline,
                   "re-subscription with the new leader")
        driver.reconcileTasks([dict(task_id=dict(value=TASK_ID))])
        sched.wait(lambda: sched.reconciled is not None, deadline, "reconciliation")
        driver.killTask(dict(value=TASK_ID))
        sched.wait(lambda: "TASK_KILLED" in sched.states, deadline, "TASK_KILLED")

    with_scheduler(sched, "corral-pymesos-failover", args, deadline, body,
                   failover_timeout=300.0)
    print(json.dumps(dict(framework_id=sched.framework_id, masters=sched.masters,
                          reconciled=sched.reconciled, states=sched.states)),
          flush=True)


if __name__ == "__main__":
    sys.exit(run(main, arg_parser(__doc__.split("\n\n")[0]).parse_args()))
