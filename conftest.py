"""Lets pytest import this checkout as ansible_collections.erdma.pd (through collections/)."""
import pathlib
import sys

COLLECTIONS = pathlib.Path(__file__).resolve().parent / "collections"
if COLLECTIONS.is_dir() and str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
