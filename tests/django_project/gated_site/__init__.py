"""A small Django project with every kind of gate, for the Django adapter's tests.

The caller is named by two request headers, as in the Flask sample app
(tests/gates_sample.py): ``X-User`` (the user id) and ``X-Plan``.
"""
