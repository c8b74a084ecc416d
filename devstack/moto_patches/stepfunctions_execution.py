"""Step Functions: state machines really execute, calling Lambda on this emulator.

moto ships an ASL interpreter (a port of LocalStack's) but by default only records an
execution. This sets moto's `stepfunctions.execute_state_machine` configuration (what a
POST to `/moto-api/config` would) and `MOTO_PORT`, the port the interpreter's Lambda client
reaches `localhost` on (`boto_client_for`), to this server's port.

Upstream-worthy: no. Configuration of moto, not a change to it.
"""

from __future__ import annotations

import inspect
import os

from devstack.moto_patches._internals import Runtime, checking


def check() -> None:
    with checking(__name__) as expect:
        from moto.core.config import default_user_config
        from moto.stepfunctions import responses as sfn_responses
        from moto.stepfunctions.parser.asl.utils import boto_client

        expect(
            "stepfunctions" in default_user_config,
            "moto.core.config.default_user_config has no 'stepfunctions' section",
        )
        expect(
            "execute_state_machine" in inspect.getsource(sfn_responses.get_backend),
            "moto.stepfunctions.responses.get_backend no longer reads execute_state_machine",
        )
        expect(
            "moto_server_port" in inspect.getsource(boto_client.boto_client_for),
            "moto.stepfunctions.parser.asl.utils.boto_client.boto_client_for no longer uses "
            "MOTO_PORT (moto_server_port) to reach Lambda",
        )


def apply(runtime: Runtime) -> None:
    from moto.core.config import default_user_config

    os.environ["MOTO_PORT"] = str(runtime.port)  # the interpreter calls localhost:MOTO_PORT
    default_user_config["stepfunctions"] = {"execute_state_machine": True}
