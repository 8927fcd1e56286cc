"""The `.arb` policy language: parse, check, compile, decide.

Pure and free of I/O beyond reading the policy files it is pointed at.
"""

from arbiter.errors import PolicyError
from arbiter.lang.api import check, check_sources, load_policy, load_policy_from_sources
from arbiter.lang.decision import Decision, Fired, TraceStep
from arbiter.lang.diagnostics import Diagnostic
from arbiter.lang.policy import Policy

__all__ = [
    "Decision",
    "Diagnostic",
    "Fired",
    "Policy",
    "PolicyError",
    "TraceStep",
    "check",
    "check_sources",
    "load_policy",
    "load_policy_from_sources",
]
