"""The SQL that feature-gates applies to an application's database.

Installed as the data package ``feature_gates.migrations``; one folder per
migration set (``core``, ``counters``), read with :mod:`importlib.resources`.
"""
