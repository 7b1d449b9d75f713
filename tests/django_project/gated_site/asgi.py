"""The test project's ASGI application (gunicorn --worker-class asgi gated_site.asgi)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gated_site.settings")
application = get_asgi_application()
