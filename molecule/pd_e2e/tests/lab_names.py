"""The scenario's node names, as molecule.yml builds them from E2E_PREFIX (default e2e).

One converged copy of pd_e2e per prefix can live beside the others (each helper's own lab, CI's e2e-*);
every test module takes the names from here so that it talks to its own copy.
"""
import os

# molecule.yml's ${E2E_PREFIX:-e2e}: unset and empty both mean the default.
PREFIX = os.environ.get("E2E_PREFIX") or "e2e"
MASTER = f"{PREFIX}-master"
PREFILL = f"{PREFIX}-prefill"
DECODE = f"{PREFIX}-decode"
DECODE2 = f"{PREFIX}-decode2"  # the decode engine host of the container runtime (podman)
