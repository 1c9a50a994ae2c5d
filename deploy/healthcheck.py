"""Container healthcheck: exit 0 when the local Daphne answers GET /livez with 200.

Liveness, not readiness: a database or Redis blip must not mark every replica
unhealthy at once (/readyz and the contract's /healthz report those).

Sends a Host header that DJANGO_ALLOWED_HOSTS accepts (its first entry), so the
check keeps working when the allowed hosts are the public names only.
"""

import os
import sys
import urllib.request

port = os.environ.get("PORT", "8000")
hosts = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
host = hosts[0].lstrip(".") if hosts and hosts[0] != "*" else "localhost"
request = urllib.request.Request(f"http://127.0.0.1:{port}/livez", headers={"Host": host})
try:
    with urllib.request.urlopen(request, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as error:  # refused, timed out, 503: all "unhealthy"
    print(f"unhealthy: {error}", file=sys.stderr)
    sys.exit(1)
