"""Stand-in for ansible-test's get-pip bootstrap script, whose download host is not reachable here.

ansible-test runs this as `python get-pip.py [pip options] pip==X ...` inside a new, empty venv.
It installs the pip bundled with that Python (ensurepip), then asks that pip for what ansible-test
wanted, from the package registry the machine is configured for.
"""
import subprocess
import sys

# ensurepip in a child process: in-process it points PIP_CONFIG_FILE at /dev/null, and the pip
# started after it would then lose the machine's pip configuration (its CA bundle, its mirror).
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
