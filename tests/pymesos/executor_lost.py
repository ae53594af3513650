"""pymesos framework that must survive a FAILURE event for a recovered executor.

The framework checkpoints and runs one command task that waits for the file
`done` in its sandbox, printing `{"event": "running", ...}` once it runs. The
test then kills the agent with SIGKILL and restarts it (the agent recovers
the live executor, which is not its child any more) and creates `done`: the
task finishes and the executor exits with a status the agent cannot know.
pymesos reads `status` of every executor FAILURE event unconditionally
(`executorLost(driver, executor_id, agent_id, status)`); a missing field kills
its driver thread. After the executor is lost, this peer reconciles the task
and waits for the answer, which only a live driver receives, and prints a
JSON summary.

  python executor_lost.py --master 127.0.0.1:5050
"""

import json
import sys

from common import (
    OneTaskScheduler, arg_parser, run, with_scheduler,
)

TASK_ID = "pymesos-recovered-task"


class Scheduler(OneTaskScheduler):
    def __init__(self):
        super(Scheduler, self).__init__(
            TASK_ID, "while [ ! -f done ]; do sleep 0.1; done; echo finished")
        self.states = []
        self.lost = []          # (executor_id, status) of FAILURE events
        self.reconciled = None

    def executorLost(self, driver, executor_id, agent_id, status):
        super(Scheduler, self).executorLost(driver, executor_id, agent_id, status)
        with self.cond:
            self.lost.append(dict(executor_id=executor_id.value, status=status))
            self.cond.notify_all()

    def on_status(self, driver, status):
        if status.get("reason") == "REASON_RECONCILIATION":
            self.reconciled = status.state
            return
        self.states.append(status.state)
        if status.state == "TASK_RUNNING" and self.states.count("TASK_RUNNING") == 1:
            print(json.dumps(dict(event="running", agent_id=self.agent_id,
                                  framework_id=self.framework_id)), flush=True)


def main(args, deadline):
    sched = Scheduler()

    def body(driver):
        sched.wait(lambda: "TASK_RUNNING" in sched.states, deadline, "TASK_RUNNING")
        sched.wait(lambda: "TASK_FINISHED" in sched.states, deadline, "TASK_FINISHED")
        sched.wait(lambda: sched.lost, deadline, "the executor's FAILURE event")
        driver.reconcileTasks([dict(task_id=dict(value=TASK_ID),
                                    agent_id=dict(value=sched.agent_id))])
        sched.wait(lambda: sched.reconciled is not None, deadline,
                   "the reconciliation answer (the driver is alive)")

    with_scheduler(sched, "corral-pymesos-executor-lost", args, deadline, body,
                   failover_timeout=600.0, checkpoint=True)
    print(json.dumps(dict(framework_id=sched.framework_id, states=sched.states,
                          executor_lost=sched.lost, reconciled=sched.reconciled)),
          flush=True)


if __name__ == "__main__":
    sys.exit(run(main, arg_parser(__doc__.split("\n\n")[0]).parse_args()))
