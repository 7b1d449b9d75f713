"""feature-gates' own migrations, applied by `manage.py migrate` through its runner."""

from __future__ import annotations

from django.db import migrations

from feature_gates.django.operations import MigrateFeatureGates


class Migration(migrations.Migration):
    # The runner takes its own locks and builds indexes concurrently.
    atomic = False
    dependencies: list[tuple[str, str]] = []
    operations = [MigrateFeatureGates()]
