"""Step Functions: StopExecution during a Map ends the execution ABORTED, as on AWS.

When an execution is stopped while a Map runs, moto 5.2.5 aborts the Map's iterations, and
the abort then travels up as a failure: the Map's Catch tries to build the caught error
from the stop's `error` string (`ExecutionState._construct_error_output_value` calls
`.get` on it) and the program records that as an error. `Environment.set_error` replaces
any program state, the stopped one included, so the execution ends FAILED (`States.Runtime`
or empty details) instead of ABORTED. The rotate-keys workflow's stop-and-resume test needs
a stop to be a stop. This makes `set_error` leave a stopped program stopped (what AWS does:
nothing after StopExecution changes an execution's status).

Upstream-worthy: yes (the iteration worker should pass an ExecutionFailedEventDetails for a
stopped iteration, and a stopped program should stay stopped). The canary test
`test_moto_still_passes_a_stopped_iterations_error_as_a_string` says when moto changes it.
"""

from __future__ import annotations

import inspect
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters


def check() -> None:
    with checking(__name__) as expect:
        from moto.stepfunctions.parser.asl.eval.environment import Environment
        from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped

        expect(
            parameters(Environment.set_error) == ["self", "error"],
            "moto.stepfunctions.parser.asl.eval.environment.Environment.set_error(self, error) "
            "changed",
        )
        source = inspect.getsource(Environment.set_error)
        expect(
            "self._program_state = ProgramError(" in source,
            "Environment.set_error no longer sets self._program_state",
        )
        expect(
            "ProgramStopped" in inspect.getsource(Environment.set_stop)
            and ProgramStopped is not None,
            "Environment.set_stop no longer records a ProgramStopped",
        )


def apply(runtime: Runtime) -> None:
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped

    original = Environment.set_error

    def set_error(self: Any, error: Any) -> None:
        if isinstance(getattr(self, "_program_state", None), ProgramStopped):
            return  # stopped is final: the execution ends ABORTED
        original(self, error)

    Environment.set_error = set_error  # type: ignore[method-assign]
