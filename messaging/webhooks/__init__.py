"""Outbound webhooks: signed event deliveries to endpoints that admins register.

See ``docs/webhooks.md`` for the event catalogue, signing and the retry schedule.  Other
domains only call ``messaging.webhooks.events.publish`` (inside their own transaction).
"""
