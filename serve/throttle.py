"""Throttles of the sign-in routes. Unauthenticated routes (sign-up, token
refresh, the OAuth and Telegram sign-ins, the second-factor challenge) take
from a token bucket per client IP and route; /mfa/* per user and route.
Passwords and second-factor codes are guessed against fixed windows of
attempts, reserved before the check (storage.ratelimit.Attempts)."""
from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request

from core.errors import RateLimited
from serve.auth import Principal, client_ip, current_principal, runtime_of
from storage.ratelimit import Attempts, Decision, TokenBucket


@dataclass(frozen=True)
class Throttles:
    auth: TokenBucket
    register: TokenBucket
    login_accounts: Attempts
    login_ips: Attempts
    codes: Attempts  # second-factor codes, per user


def throttles(request: Request) -> Throttles:
    """This app's throttles, made on first use from its runtime."""
    state = request.app.state
    found: Throttles | None = getattr(state, "throttles", None)
    if found is None:
        runtime = runtime_of(request)
        s, redis = runtime.settings, runtime.redis
        found = Throttles(
            auth=TokenBucket(redis, s.auth_burst, s.auth_rate_per_minute / 60),
            register=TokenBucket(redis, s.register_burst, s.register_rate_per_minute / 60),
            login_accounts=Attempts(redis, s.login_failures_per_account,
                                    s.login_window_seconds),
            login_ips=Attempts(redis, s.login_failures_per_ip, s.login_window_seconds),
            codes=Attempts(redis, s.mfa_failures_per_user, s.mfa_window_seconds))
        state.throttles = found
    return found


def refuse(decision: Decision, message: str) -> None:
    if not decision.allowed:
        raise RateLimited(message, retry_after=decision.retry_after)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", request.url.path)


async def _take(request: Request, bucket: TokenBucket, caller: str) -> None:
    decision = await bucket.take(f"rate_limit:auth:{caller}:{_route(request)}")
    refuse(decision, "too many requests; try again later")


async def per_ip(request: Request) -> None:
    """Dependency: the sign-in bucket of the client IP for this route."""
    await _take(request, throttles(request).auth, f"ip:{client_ip(request) or 'unknown'}")


async def per_ip_register(request: Request) -> None:
    await _take(request, throttles(request).register, f"ip:{client_ip(request) or 'unknown'}")


async def per_user(request: Request, principal: Principal = Depends(current_principal)) -> None:
    """Dependency: the sign-in bucket of the caller (a user or a key) for this route."""
    await _take(request, throttles(request).auth, principal.rate_key)


def code_key(user_id: object) -> str:
    return f"rate_limit:mfa:user:{user_id}"


async def reserve_code(request: Request, user_id: object) -> str:
    """Reserve one second-factor attempt of this user: past the window's limit
    even a right code is refused, so guessing stays bounded. Returns the key
    to clear when the code was right."""
    key = code_key(user_id)
    refuse(await throttles(request).codes.reserve(key),
           "too many wrong codes; try again later")
    return key


@dataclass(frozen=True)
class CodeGuesses:
    """One user's second-factor attempts (storage.mfa.Guesses), in this app's window."""

    request: Request
    user_id: object

    async def reserve(self) -> None:
        await reserve_code(self.request, self.user_id)

    async def clear(self) -> None:
        await throttles(self.request).codes.clear(code_key(self.user_id))
