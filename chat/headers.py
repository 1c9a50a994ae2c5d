"""Content-Security-Policy and Permissions-Policy on every response.

Our own few lines rather than django-csp: the policy is one fixed string
(settings.CONTENT_SECURITY_POLICY: same-origin scripts, styles, images and
sockets, no inline script, no framing), so there are no nonces or
per-view policies to manage. A response that set its own keeps it.
"""

from django.conf import settings


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
