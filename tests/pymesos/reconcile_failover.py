"""pymesos framework that reconciles at once after every master failover.

The framework checkpoints (failover_timeout 600) and runs one `sleep 300`
task, printing `{"event": "running", "agent_id": ...}` once it runs. Each
time pymesos re-subscribes with a new leader (found through the `zk://`
URL), the `reregistered` callback asks for explicit reconciliation of the
task at once, as frameworks do (Mesos' reconciliation guide; pymesos'
`reconcileTasks` sends only the task id, whatever it is given), and prints `{"event": "reconciling", "round": n}`; the main thread
repeats the request with a truncated exponential backoff until the master
answers, and prints `{"event": "reconciled", "round": n, "state": ...}`.
After --rounds failovers it kills the task and prints a JSON summary with
every state it was told.

  python reconcile_failover.py --master zk://127.0.0.1:2181/corral --rounds 3
"""

import json
import sys
import traceback

from common import (
    OneTaskScheduler, arg_parser, log, run, with_scheduler,
)

TASK_ID = "pymesos-reconcile-task"


class ReconcilingScheduler(OneTaskScheduler):
    def __init__(self):
        super(ReconcilingScheduler, self).__init__(TASK_ID, "sleep 300")
        self.round = 0       # re-subscriptions so far
        self.answers = {}    # round -> first reconciliation answer
        self.states = []

    def reconcile(self, driver):
        driver.reconcileTasks([dict(task_id=dict(value=TASK_ID),
                                    agent_id=dict(value=self.agent_id))])

    def reregistered(self, driver, master_info):
        super(ReconcilingScheduler, self).reregistered(driver, master_info)
        with self.cond:
            self.round += 1
            n = self.round
            self.cond.notify_all()
        # At once, from pymesos' own thread, before anything else happens.
        try:
            self.reconcile(driver)
        except Exception as e:
            traceback.print_exc()
            self.fail("reconcile after re-registration failed: %r" % e)
            return
        print(json.dumps(dict(event="reconciling", round=n)), flush=True)

    def on_status(self, driver, status):
        self.states.append(status.state)
        if (status.get("reason") == "REASON_RECONCILIATION"
                and self.round > 0 and self.round not in self.answers):
            self.answers[self.round] = status.state
        if status.state == "TASK_RUNNING" and self.states.count("TASK_RUNNING") == 1:
            print(json.dumps(dict(event="running", agent_id=self.agent_id)), flush=True)


def main(args, deadline):
    sched = ReconcilingScheduler()

    def body(driver):
        sched.wait(lambda: "TASK_RUNNING" in sched.states, deadline, "TASK_RUNNING")
        for n in range(1, args.rounds + 1):
            sched.wait(lambda: sched.round >= n, deadline,
                       "re-subscription %d with a new leader" % n)
            # Reconcile again with a truncated exponential backoff until the
            # master answers (the first request went out on re-registration).
            backoff = 0.5
            while not sched.poll(lambda: n in sched.answers, backoff, deadline,
                                 "reconciliation %d" % n):
                log("no answer to reconciliation %d yet; asking again" % n)
                sched.reconcile(driver)
                backoff = min(backoff * 2, 4.0)
            print(json.dumps(dict(event="reconciled", round=n,
                                  state=sched.answers[n])), flush=True)
        driver.killTask(dict(value=TASK_ID))
        sched.wait(lambda: "TASK_KILLED" in sched.states, deadline, "TASK_KILLED")

    with_scheduler(sched, "corral-pymesos-reconcile-failover", args, deadline, body,
                   failover_timeout=600.0, checkpoint=True)
    print(json.dumps(dict(framework_id=sched.framework_id, states=sched.states,
                          answers=sched.answers)), flush=True)


if __name__ == "__main__":
    p = arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=1,
                   help="master failovers to live through (default 1)")
    sys.exit(run(main, p.parse_args()))
