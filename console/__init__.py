"""The staff console: server-rendered pages under ``/console`` for moderators, marketers,
redemption staff and admins.

Same app, same login, session, CSRF token and named permissions as the API; views are thin and
call the domain services (see ``docs/console.md``).  Other domains add pages by registering a
blueprint whose views use ``console.web.staff_page`` and a ``console.nav.NavItem``.
"""
