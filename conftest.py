"""Lets pytest import this checkout as ansible_collections.erdma.pd (through collections/).

Ansible commands that tests start find it too: ansible.cfg leaves collections/ out of its
collections_path (ansible-galaxy would count the checkout as installed), so it is named here.
"""
import os
import pathlib
import sys

COLLECTIONS = pathlib.Path(__file__).resolve().parent / "collections"
if COLLECTIONS.is_dir() and str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", f"{COLLECTIONS}:~/.ansible/collections:/usr/share/ansible/collections")
