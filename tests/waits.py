"""How long a test waits for a process or a server. These are deadlines that end a test that would otherwise
hang, never claims about speed: minutes, so that the suite passes on a slow or busy machine (a 2-core runner
shared with other jobs starts the tiny vLLM server in one to three minutes). A test that is waiting polls its
condition and goes on as soon as it holds; nothing here is ever asserted."""

from __future__ import annotations

import time

START_S = 900.0  # a vLLM server, `servectl up`, a proxy or a fleet: until it is ready
STOP_S = 300.0  # a process after a signal, `down`, a short command, a request to the tiny model, a log line to appear


def wait_for(pred, timeout: float = STOP_S, every: float = 0.2):
    """pred()'s first truthy value, polled every `every` seconds until `timeout`; its last value when it never holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := pred():
            return value
        time.sleep(every)
    return pred()
