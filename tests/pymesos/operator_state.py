"""pymesos operator API: GET_STATE through MesosOperatorMasterDriver.

Calls getState() (POST /api/v1/operator, see NOTES.md) until the response
lists --expect-agents agents (agents may still be registering; it retries
once a second until --timeout), then prints the response as one JSON line.

  python operator_state.py --master 127.0.0.1:5050 --expect-agents 2
"""

import json
import sys
import time

from pymesos import MesosOperatorMasterDriver

from common import Failure, arg_parser, log, run


def main(args, deadline):
    master = args.master if ":" in args.master else args.master + ":5050"
    # No start(): that would open an operator SUBSCRIBE stream; plain calls
    # need only the constructor.
    driver = MesosOperatorMasterDriver(master, use_addict=True)
    last = "no answer yet"
    while True:
        try:
            state = driver.getState()
        except Exception as e:
            state, last = None, "getState() raised %r" % e
        if state is not None:
            if state.get("type") != "GET_STATE" or "get_state" not in state:
                raise Failure("response is not a GET_STATE response "
                              "(pymesos returns {} for a non-JSON body): %s"
                              % json.dumps(state)[:2000])
            agents = state["get_state"].get("get_agents", {}).get("agents", [])
            ids = [a.get("agent_info", {}).get("id", {}).get("value")
                   for a in agents]
            last = "%d agent(s): %s" % (len(agents), ids)
            if len(agents) == args.expect_agents:
                log("GET_STATE lists %s" % last)
                print(json.dumps(state, sort_keys=True), flush=True)
                return
        log("%s (expecting %d agent(s))" % (last, args.expect_agents))
        if deadline.remaining() <= 1:
            raise Failure("GET_STATE never listed %d agent(s); last: %s"
                          % (args.expect_agents, last))
        time.sleep(1)


if __name__ == "__main__":
    p = arg_parser(__doc__.split("\n\n")[0])
    p.add_argument("--expect-agents", type=int, default=1)
    sys.exit(run(main, p.parse_args()))
