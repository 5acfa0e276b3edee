"""Messaging: everything that leaves the system (mail, in-app delivery, outbound webhooks)."""
