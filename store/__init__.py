"""The production store: what the service saw and the labels it was told, in SQL (SQLAlchemy Core).

Imported by service/ (capture, feedback) and by training/ (the retraining job reads labelled
captures by time); it imports neither. SQLite (one file, WAL) for one machine, PostgreSQL for a
fleet of replicas: the URL chooses.
"""
from store.engine import connect
from store.reading import Capture, count, count_labelled, find, labelled
from store.retention import prune
from store.schema import CAPTURES, SOURCES
from store.writing import Outcome, insert, label

__all__ = ["CAPTURES", "SOURCES", "Capture", "Outcome", "connect", "count", "count_labelled", "find", "insert", "label", "labelled", "prune"]
