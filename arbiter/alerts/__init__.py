"""Alerts to a Discord or Slack webhook: halts, Alert actions, reached caps, poisoned tasks,
and the daily cost summary. Sent from a thread of their own (``outbox``), never from a
decision's."""

from arbiter.alerts.messages import Alert, from_decision, poisoned, worth_a_look
from arbiter.alerts.outbox import Outbox
from arbiter.alerts.webhook import WebhookFailed, where

__all__ = [
    "Alert",
    "Outbox",
    "WebhookFailed",
    "from_decision",
    "poisoned",
    "where",
    "worth_a_look",
]
