"""pymesos framework launching one pure command task (no executor).

The TaskInfo carries `command: {shell: true, value: "echo hello-corral"}` and
no ExecutorInfo, so the agent runs it with its command executor. Succeeds when
the task reaches TASK_FINISHED; fails on any other terminal state.

  python command_task.py --master 127.0.0.1:5050 [--command "echo hi"]
"""

import json
import sys
import traceback

from common import (
    BAD_STATES, EPS, BaseScheduler, arg_parser, log, offer_scalar, run,
    scalar, with_scheduler,
)

TASK_ID = "pymesos-command-task"


class CommandScheduler(BaseScheduler):
    def __init__(self, command, cpus, mem, task_id=TASK_ID):
        super(CommandScheduler, self).__init__()
        self.command, self.cpus, self.mem = command, cpus, mem
        self.task_id = task_id
        self.launched_on = None
        self.states = []

    def resourceOffers(self, driver, offers):
        try:
            for offer in offers:
                with self.cond:
                    fits = (offer_scalar(offer, "cpus") + EPS >= self.cpus and
                            offer_scalar(offer, "mem") + EPS >= self.mem)
                    launch = self.launched_on is None and fits
                    if launch:
                        self.launched_on = offer.agent_id.value
                if launch:
                    log("launching %s on agent %s (%s): %r" % (
                        self.task_id, offer.agent_id.value, offer.get("hostname"),
                        self.command))
                    driver.launchTasks(offer.id, [dict(
                        task_id=dict(value=self.task_id),
                        agent_id=dict(value=offer.agent_id.value),
                        name=self.task_id,
                        command=dict(shell=True, value=self.command),
                        resources=[scalar("cpus", self.cpus),
                                   scalar("mem", self.mem)],
                    )])
                else:
                    log("declining offer %s" % offer.id.value)
                    driver.declineOffer(offer.id,
                                        filters=dict(refuse_seconds=3600))
        except Exception as e:
            traceback.print_exc()
            self.fail("error handling offers: %r" % e)

    def on_status(self, driver, status):
        if status.task_id.value != self.task_id:
            self.failure = "update for unknown task %s" % status.task_id.value
            return
        self.states.append(status.state)
        if status.state in BAD_STATES:
            self.failure = "task reached %s (reason=%s message=%s)" % (
                status.state, status.get("reason"), status.get("message"))


def main(args, deadline):
    sched = CommandScheduler(args.command, args.cpus, args.mem)

    def body(driver):
        sched.wait(lambda: "TASK_FINISHED" in sched.states, deadline,
                   "TASK_FINISHED of %s" % TASK_ID)

    with_scheduler(sched, "corral-pymesos-command-task", args, deadline, body)
    print(json.dumps(dict(task_id=TASK_ID, agent=sched.launched_on,
                          states=sched.states)), flush=True)


if __name__ == "__main__":
    p = arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--command", default="echo hello-corral")
    p.add_argument("--cpus", type=float, default=0.1)
    p.add_argument("--mem", type=float, default=32.0)
    sys.exit(run(main, p.parse_args()))
