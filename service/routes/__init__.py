"""HTTP routes, one blueprint per API; helpers shared by them."""
from __future__ import annotations

from flask import current_app

from service.registry import Registry
from service.settings import Settings


def registry() -> Registry:
    return current_app.extensions["registry"]


def settings() -> Settings:
    return current_app.extensions["settings"]
