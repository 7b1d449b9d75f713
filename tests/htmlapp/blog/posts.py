"""The posts: everyone reads them; a signed-in user writes, within the plan's limit."""

from __future__ import annotations

from flask import Blueprint
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from feature_gates import feature_limit

from .auth import login_required
from .db import get_db

bp = Blueprint("posts", __name__)


@bp.route("/")
def index():
    posts = get_db().execute("SELECT title, body FROM post ORDER BY id DESC").fetchall()
    return render_template("index.html", posts=posts)


@bp.route("/create", methods=("GET", "POST"))
@login_required
@feature_limit("posts_monthly", methods=["POST"])
def create():
    if request.method == "POST":
        title = request.form["title"]
        if not title:
            flash("Title is required.")
            # 400: a refused form gives its use back.
            return render_template("create.html"), 400
        db = get_db()
        db.execute(
            "INSERT INTO post (title, body, author_id) VALUES (?, ?, ?)",
            (title, request.form["body"], g.user["id"]),
        )
        db.commit()
        return redirect(url_for("index"))
    return render_template("create.html")
