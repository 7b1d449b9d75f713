"""feature-gates in the blog: who is asking, and what a browser sees when refused."""

from __future__ import annotations

from flask import flash
from flask import g
from flask import redirect
from flask import url_for

from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import prefers_html

gates = FeatureGates()


@gates.subject_loader
def current_subject():
    if g.user is None:
        return None
    return Subject(user_id=g.user["id"], plan=g.user["plan"])


@gates.on_denied
def back_to_the_index(denial):
    if not prefers_html():
        return None  # API clients keep the problem+json answer
    flash(denial.message)
    return redirect(url_for("index"))
