"""A local server that speaks the custom-elements API, to try clients without the real service.

``mediaprep sandbox`` runs it. It speaks ``docs/wire-protocol.md``: it checks create requests the
way the service would (the body rules of :mod:`mediaprep.spec`, Base64 media through the
inspectors), keeps tasks in memory, moves them to ``completed`` over a few polls, and injects
faults on demand: error statuses, dropped connections, slow or garbled answers, failed tasks.
An error status or a garbled answer can come before the request is processed (nothing stored)
or, with ``after_store``, after it (a create stores its task, then the answer is the fault):
the cases that would show a client creating twice.

Admin endpoints, for tests and scripts (no API key needed):

    GET    /_sandbox/faults     the faults in force
    POST   /_sandbox/faults     add faults: a JSON list of specs ("create:1:status=503") or objects
                                ({"on": "create", "nth": 1, "action": "status", "status": 504,
                                "after_store": true})
    DELETE /_sandbox/faults     remove every fault
    GET    /_sandbox/elements   every stored task with its element

A fault spec reads ``ON:NTH[+]:ACTION[=VALUE][,retry_after=VALUE][,after_store]``: ``ON`` is
``create``, ``get`` or ``any``; ``NTH+`` fires on the nth request of that kind and every later
one; e.g. ``create:1:status=503``, ``get:2:status=429,retry_after=1``, ``create:1:drop``,
``any:3:slow=2.5``, ``create:1:status=504,after_store``, ``create:1:fail_task=reason text``
(:meth:`Fault.parse` has them all).

The API key is never stored, logged or echoed: tasks belong to a SHA-256 of it.

The package, in the order a request meets it:

    server.py     the HTTP server: SandboxServer, serve
    state.py      Sandbox: routing, tasks, the request log, the faults that fire
    body.py       the request body: to a temp file, long strings to files, streamed Base64
    validate.py   the create request's field and media rules (mediaprep.spec, the inspectors)
    faults.py     Fault, its spec syntax, when it fires and what it answers
    answers.py    Answer, the error envelope, Problem (a refused request)
"""

from __future__ import annotations

from .body import MAX_BODY_BYTES
from .faults import DEFAULT_FAIL_REASON, MALFORMED_BODY, Fault
from .server import SandboxServer, serve
from .state import ELEMENT_ID_BASE, Sandbox
from .validate import MEDIA_URL_BASE

__all__ = [
    "DEFAULT_FAIL_REASON",
    "ELEMENT_ID_BASE",
    "MALFORMED_BODY",
    "MAX_BODY_BYTES",
    "MEDIA_URL_BASE",
    "Fault",
    "Sandbox",
    "SandboxServer",
    "serve",
]
