"""Pages for people: the classifier page, the model card and the API docs."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("web", __name__)
