"""Messaging: everything that leaves the system.

Delivery of notifications by email and in-app, preferences, account emails (docs/messaging.md):
``services`` is the delivery core, ``render`` the templates and translations, ``mail`` the SMTP
channel, ``preferences`` the member's choices and unsubscribe, ``account`` verification and
password reset, ``inbox`` the in-app list.  ``webhooks`` delivers signed outbound webhooks
(docs/webhooks.md).
"""
