"""Response headers Django's SecurityMiddleware does not set: Content-Security-Policy (and a
Permissions-Policy). The API's JSON and the schema viewers get the same policy; the Swagger and
ReDoc pages load their assets from a CDN, so those two pages get a policy that allows it.
"""

from __future__ import annotations

from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter

PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=()"
_DOCS_PREFIXES = ("/api/v1/docs/", "/api/v1/redoc/")
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "img-src 'self' data: https://cdn.jsdelivr.net https://cdn.redoc.ly; "
    "font-src 'self' https://fonts.gstatic.com; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            docs = request.path.startswith(_DOCS_PREFIXES)
            response["Content-Security-Policy"] = _DOCS_CSP if docs else settings.KASTLE_CSP
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response


class ExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter hides sensitive settings and headers; this one also hides POST fields and
    traceback local variables whose names look sensitive (password, secret, token, key...), even
    without @sensitive_post_parameters / @sensitive_variables, so a debug page or an error e-mail
    never shows a password or an API secret."""

    def get_traceback_frame_variables(self, request, tb_frame):
        cleansed = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if isinstance(name, str) and self.hidden_settings.search(name):
                value = self.cleansed_substitute
            elif isinstance(value, dict):
                value = self.cleanse_setting(name, value)
            cleansed.append((name, value))
        return cleansed

    def get_post_parameters(self, request):
        params = super().get_post_parameters(request)
        if request is None or not params:
            return params
        cleansed = params.copy()
        for name in cleansed:
            if self.hidden_settings.search(name):
                cleansed[name] = self.cleansed_substitute
        return cleansed
