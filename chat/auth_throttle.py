"""Throttling the doors that take a password or make an account: the login
page, the admin's login, sign-up and password change.

Counted (chat.throttle, in the cache: Redis with REDIS_URL, so all workers
count together):
- failed logins, on either login page, per username (CHAT_LOGIN_LIMIT_USER)
  and per client address (CHAT_LOGIN_LIMIT_IP), from Django's
  user_login_failed signal; a wrong old password on the password-change page
  counts against the account's username the same way;
- sign-up attempts per client address (CHAT_SIGNUP_LIMIT_IP) and per
  username asked for (CHAT_LOGIN_LIMIT_USER).

Past a limit the door answers 429 with a page that says when to try again
(and a Retry-After header), before looking at the password: the right
password does not get through a throttled door either. A username counts as
its skeleton (chat.text), so `Alice` and `аlice` share one budget.

Why our own module rather than django-axes: the counters belong in Redis,
which every worker already shares, not in database rows written on every
failure; sign-up and password change need the same limits as login; and the
client address must be exactly the one Daphne reports (see
chat.throttle.client_address), which is a few lines here.
"""

from __future__ import annotations

import math
from functools import wraps

from django.conf import settings
from django.shortcuts import render

from . import text, throttle

LOGIN_USER, LOGIN_IP = "login-user", "login-ip"
SIGNUP_USER, SIGNUP_IP = "signup-user", "signup-ip"


def _per_account(scope: str, username: str) -> tuple:
    """A username's counter: its skeleton, so that look-alikes share it."""
    return (scope, text.skeleton(username or ""), settings.CHAT_LOGIN_LIMIT_USER)


def _per_address(scope: str, request, rate) -> tuple:
    return (scope, throttle.client_address(request), rate)


def _too_many(request, wait: float):
    response = render(
        request, "registration/throttled.html", {"wait": throttle.wait_text(wait)}, status=429
    )
    response["Retry-After"] = str(math.ceil(wait))
    return response


def _longest_wait(*checks) -> float | None:
    waits = [w for w in (throttle.retry_after(*check) for check in checks) if w is not None]
    return max(waits, default=None)


def login_failed(*, request, username: str) -> None:
    """Count a failed login (the user_login_failed receiver calls this)."""
    throttle.record(*_per_account(LOGIN_USER, username))
    throttle.record(*_per_address(LOGIN_IP, request, settings.CHAT_LOGIN_LIMIT_IP))


def guard_login(view):
    """Wrap a login view (ours or the admin's): a POST for a username or from
    an address past its limit gets 429 without the password being checked."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if request.method == "POST":
            wait = _longest_wait(
                _per_account(LOGIN_USER, request.POST.get("username", "")),
                _per_address(LOGIN_IP, request, settings.CHAT_LOGIN_LIMIT_IP),
            )
            if wait is not None:
                return _too_many(request, wait)
        return view(request, *args, **kwargs)

    return guarded


def guard_signup(view):
    """Wrap the sign-up view: every POST counts, per address and per name."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if request.method == "POST":
            checks = [
                _per_account(SIGNUP_USER, request.POST.get("username", "")),
                _per_address(SIGNUP_IP, request, settings.CHAT_SIGNUP_LIMIT_IP),
            ]
            wait = _longest_wait(*checks)
            if wait is not None:
                return _too_many(request, wait)
            for check in checks:
                throttle.record(*check)
        return view(request, *args, **kwargs)

    return guarded


def guard_password_change(view):
    """Wrap the password-change view: a wrong old password (the form comes
    back instead of a redirect) counts as a failed login for the account."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if request.method != "POST" or not request.user.is_authenticated:
            return view(request, *args, **kwargs)
        account = _per_account(LOGIN_USER, request.user.get_username())
        wait = _longest_wait(account)
        if wait is not None:
            return _too_many(request, wait)
        response = view(request, *args, **kwargs)
        form = (getattr(response, "context_data", None) or {}).get("form")
        if form is not None and "old_password" in form.errors:
            throttle.record(*account)
        return response

    return guarded
