"""WSGI entry point: `gunicorn controlplane.wsgi:application` (with platform/ on PYTHONPATH)."""

import os
import sys
from pathlib import Path

_root = Path(__file__).resolve().parent.parent.parent
for _p in (str(_root), str(_root / "platform")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
