"""Response headers Django's SecurityMiddleware does not set: Content-Security-Policy (and a
Permissions-Policy). The API's JSON and the schema viewers get the same policy; the Swagger and
ReDoc pages load their assets from a CDN, so those two pages get a policy that allows it.
"""

from __future__ import annotations

from django.conf import settings

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
