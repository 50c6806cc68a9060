"""Approvals: just-in-time access requests and command reviews, their live events and webhook.

See :mod:`central.approvals.service` for the rules (reviewers from policy, no self-approval,
N distinct approvals, single-use command approvals, expiry) and
:mod:`central.approvals.webhook` for the outgoing notifications.
"""

from central.approvals.service import ApprovalError, Approvals, ItemView
from central.approvals.webhook import Webhook, webhook_message

__all__ = ["ApprovalError", "Approvals", "ItemView", "Webhook", "webhook_message"]
