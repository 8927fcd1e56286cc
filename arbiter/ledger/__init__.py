"""The ledger: prices, budgets, reservations, calls and decision records in SQL."""

from arbiter.ledger.approvals import ApprovalRecord
from arbiter.ledger.control import HaltState, PolicyRecord
from arbiter.ledger.decisions import StoredDecision
from arbiter.ledger.ledger import Ledger
from arbiter.ledger.models import NANO
from arbiter.ledger.prices import LOCAL_PROVIDERS, Price, PriceTable
from arbiter.ledger.report import GROUPS, GroupBy, SpendReport, SpendRow
from arbiter.ledger.research import Topic
from arbiter.ledger.reservations import CallRecord, Timings
from arbiter.ledger.windows import Clock, system_clock

__all__ = [
    "GROUPS",
    "LOCAL_PROVIDERS",
    "NANO",
    "ApprovalRecord",
    "CallRecord",
    "Clock",
    "GroupBy",
    "HaltState",
    "Ledger",
    "PolicyRecord",
    "Price",
    "PriceTable",
    "SpendReport",
    "SpendRow",
    "StoredDecision",
    "Timings",
    "Topic",
    "system_clock",
]
