# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""antsibull-nox sessions of erdma.pd: ansible-test sanity and units (`python3 tests/run.py ansible-test`).

antsibull-nox puts the collection into an ansible_collections/erdma/pd tree with the collections it
uses, in a venv of its own. Two things it cannot do here, done below: the collections it uses come
from the control venv's `ansible` package (Galaxy is not reachable), and ansible-test's sanity venvs
get pip from our stand-in of the bootstrap script (its download host is not reachable either).
"""

import glob
import importlib.metadata
import os
import pathlib
import re
import shutil
import sys
import sysconfig

import antsibull_nox
from antsibull_nox.sessions.ansible_test import add_ansible_test_session

ROOT = pathlib.Path(__file__).resolve().parent
PIP_STANDIN = ROOT / "tests" / "ansible_test" / "get_pip_standin.py"
PYTHON = "%d.%d" % sys.version_info[:2]
# The ansible-core of the control venv (requirements.txt), exactly, in the sessions' venvs too.
CORE = importlib.metadata.version("ansible-core")
CONSTRAINTS = ROOT / ".nox" / "constraints.txt"
CONSTRAINTS.parent.mkdir(exist_ok=True)
CONSTRAINTS.write_text("ansible-core==%s\n" % CORE)
os.environ["PIP_CONSTRAINT"] = str(CONSTRAINTS)
# antsibull-nox copies ansible-test's tests/output back here, but only into a directory that exists.
(ROOT / "tests" / "output").mkdir(exist_ok=True)


def drop_scratch_output():
    """Remove ansible-test's scratch files before antsibull-nox copies tests/output back: 1.10.0 copies
    bottom-up and cannot create .tmp/pylint/... (runs in the prepared collection's directory)."""
    shutil.rmtree(os.path.join("tests", "output", ".tmp"), ignore_errors=True)


# ansible.posix, ansible.utils, community.general, containers.podman: as the `ansible` package ships them.
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", sysconfig.get_paths()["purelib"])


def offer_pip_standin():
    """Put the stand-in where ansible-test looks for the pip bootstrap script it would download."""
    pattern = str(ROOT / ".nox" / "*" / "lib" / "python3*" / "site-packages" / "ansible_test" / "_internal"
                  / "python_requirements.py")
    for requirements in glob.glob(pattern):
        for version in set(re.findall(r"pip='([0-9.]+)'", pathlib.Path(requirements).read_text())):
            cache = pathlib.Path.home() / ".ansible" / "test" / "cache" / ("get_pip_%s.py" % version.replace(".", "_"))
            cache.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PIP_STANDIN, cache)


antsibull_nox.load_antsibull_nox_toml()

for _what in ("sanity", "units"):
    add_ansible_test_session(
        name="ansible-test-%s" % _what,
        description="ansible-test %s --local on Python %s" % (_what, PYTHON),
        ansible_test_params=[_what, "--local", "--python", PYTHON, "--requirements", "--color", "no"],
        default=True,
        ansible_core_version=".".join(CORE.split(".")[:2]),
        ansible_core_source="pypi",
        handle_coverage="never",
        callback_before=offer_pip_standin,
        callback_after=drop_scratch_output,
    )
