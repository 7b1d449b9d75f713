#!/usr/bin/env python
"""The test project's manage.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # The project, and tests/ for the sample app's plans.
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gated_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
