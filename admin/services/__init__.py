"""Control-plane operations shared by the CLI, the JSON API and the web UI.

Each function takes an open session, the acting operator and ``now``, checks
the rules, changes rows and writes the audit entry in the same transaction, so
no interface can change anything without a trace.
"""

from __future__ import annotations


class ServiceError(ValueError):
    """A refused change, with a message fit to show the operator."""


class NotFound(ServiceError):
    pass
