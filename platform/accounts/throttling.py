"""Rate limits, counted in the shared cache (Redis, or files in embedded mode) across processes."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class _SettingRateThrottle(SimpleRateThrottle):
    setting_name = ""

    def get_rate(self) -> str:
        return getattr(settings, self.setting_name)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class SignupRateThrottle(_SettingRateThrottle):
    """Sign-ups per client address (KASTLE_SIGNUP_RATE, e.g. 20/hour). Used by REST and the portal."""

    scope = "signup"
    setting_name = "KASTLE_SIGNUP_RATE"


class TokenRateThrottle(_SettingRateThrottle):
    """Password logins for REST tokens per client address (KASTLE_TOKEN_RATE)."""

    scope = "token"
    setting_name = "KASTLE_TOKEN_RATE"
