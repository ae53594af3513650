"""pymesos framework with a custom executor.

Registers a framework with an unmodified pymesos MesosSchedulerDriver, packs
N tasks (cpus 0.1, mem 32 each) into the offers it gets, each task run by a
custom executor (ExecutorInfo whose command starts executor.py), waits until
all N are TASK_FINISHED (pymesos acknowledges every update itself), checks the
data the executor echoed back and that at least --min-agents agents ran tasks,
stops the driver and prints a JSON summary line.

  python framework.py --master 127.0.0.1:5050 --tasks 4 \
      --executor-cmd "$PY tests/pymesos/executor.py" [--min-agents 2]
"""

import collections
import json
import math
import os
import shlex
import sys
import traceback
import uuid

from pymesos import encode_data

from common import (
    BAD_STATES, EPS, BaseScheduler, Failure, arg_parser, log, offer_scalar,
    run, scalar, status_data, with_scheduler,
)

TASK_CPUS = 0.1
TASK_MEM = 32.0
EXECUTOR_ID = "pymesos-executor"


class FrameworkScheduler(BaseScheduler):
    def __init__(self, n_tasks, min_agents, executor_cmd):
        super(FrameworkScheduler, self).__init__()
        self.pending = ["pymesos-task-%d" % i for i in range(n_tasks)]
        self.payload = {}  # task id -> data sent in TaskInfo.data
        # At most this many tasks per agent, so that N tasks spread over at
        # least min_agents agents when the cluster has them.
        self.per_agent_cap = int(math.ceil(n_tasks / float(min_agents)))
        self.per_agent = collections.Counter()
        self.finished = {}  # task id -> agent id
        # The same ExecutorInfo for every task: one executor per agent runs
        # all the tasks the framework puts on that agent.
        self.executor = dict(
            executor_id=dict(value=EXECUTOR_ID),
            name="pymesos test executor",
            command=dict(shell=True, value=executor_cmd),
        )

    def _plan(self, offer):
        agent = offer.agent_id.value
        cpus = offer_scalar(offer, "cpus")
        mem = offer_scalar(offer, "mem")
        tasks = []
        while (self.pending and cpus + EPS >= TASK_CPUS
               and mem + EPS >= TASK_MEM
               and self.per_agent[agent] < self.per_agent_cap):
            task_id = self.pending.pop(0)
            payload = "%s:%s" % (task_id, uuid.uuid4().hex)
            self.payload[task_id] = payload
            self.per_agent[agent] += 1
            cpus -= TASK_CPUS
            mem -= TASK_MEM
            tasks.append(dict(
                task_id=dict(value=task_id),
                agent_id=dict(value=agent),
                name=task_id,
                executor=self.executor,
                resources=[scalar("cpus", TASK_CPUS),
                           scalar("mem", TASK_MEM)],
                data=encode_data(payload.encode("utf-8")),
            ))
        return tasks

    def resourceOffers(self, driver, offers):
        try:
            for offer in offers:
                with self.cond:
                    tasks = self._plan(offer)
                    more = bool(self.pending)
                desc = "offer %s from agent %s (%s): cpus=%g mem=%g" % (
                    offer.id.value, offer.agent_id.value,
                    offer.get("hostname"), offer_scalar(offer, "cpus"),
                    offer_scalar(offer, "mem"))
                if tasks:
                    log("%s -> launching %s" % (
                        desc, [t["task_id"]["value"] for t in tasks]))
                    driver.launchTasks(offer.id, tasks)
                else:
                    log("%s -> declining" % desc)
                    driver.declineOffer(
                        offer.id, filters=dict(refuse_seconds=1 if more else 3600))
        except Exception as e:
            traceback.print_exc()
            self.fail("error handling offers: %r" % e)

    def on_status(self, driver, status):
        task_id = status.task_id.value
        state = status.state
        if task_id not in self.payload:
            self.failure = "update for unknown task %s" % task_id
        elif state in BAD_STATES:
            self.failure = "task %s reached %s (reason=%s message=%s)" % (
                task_id, state, status.get("reason"), status.get("message"))
        elif state == "TASK_FINISHED":
            echoed = json.loads(status_data(status).decode("utf-8"))
            if echoed.get("received") != self.payload[task_id]:
                self.failure = ("task %s: executor echoed data %r, expected "
                                "%r" % (task_id, echoed.get("received"),
                                        self.payload[task_id]))
                return
            self.finished[task_id] = status.agent_id.value
            log("%d/%d tasks finished" % (
                len(self.finished), len(self.payload) + len(self.pending)))


def main(args, deadline):
    if args.tasks < 1 or args.min_agents < 1:
        raise Failure("--tasks and --min-agents must be >= 1")
    sched = FrameworkScheduler(args.tasks, args.min_agents, args.executor_cmd)

    def body(driver):
        sched.wait(lambda: len(sched.finished) == args.tasks, deadline,
                   "all %d tasks TASK_FINISHED" % args.tasks)
        agents = sorted(set(sched.finished.values()))
        if len(agents) < args.min_agents:
            raise Failure("tasks ran on %d agent(s) %s, expected at least %d"
                          % (len(agents), agents, args.min_agents))
        return agents

    agents = with_scheduler(sched, "corral-pymesos-framework", args, deadline,
                            body)
    print(json.dumps(dict(finished=len(sched.finished), agents=agents,
                          framework_id=sched.framework_id)), flush=True)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    default_cmd = "%s %s" % (shlex.quote(sys.executable),
                             shlex.quote(os.path.join(here, "executor.py")))
    p = arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--min-agents", type=int, default=1)
    p.add_argument("--executor-cmd", default=default_cmd,
                   help="shell command that starts executor.py "
                        "(default: %(default)s)")
    sys.exit(run(main, p.parse_args()))
