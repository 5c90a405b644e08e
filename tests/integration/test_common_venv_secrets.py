"""erdma.pd._common's venv tasks for real: a private index whose URL holds credentials.

A package index on 127.0.0.1 that answers only with the right basic-auth credentials serves one tiny
wheel built here. The venv tasks (through tests/integration/venv_with_private_index.yml, run with -vvv)
must install it, so pip did get the credentials, while the password appears in no line Ansible printed
(module arguments, the command line with its environment, results) and only in a root-only file.
"""
import base64
import functools
import hashlib
import http.server
import io
import os
import pathlib
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "venv_with_private_index.yml"
USER, PASSWORD = "probe-user", "s3cr3t-Idx-9f2b7c"
WHEEL = "erdma_pd_private_probe-1.0-py3-none-any.whl"


def build_wheel(directory):
    """A minimal pure-Python wheel: one module, its dist-info, a RECORD with hashes."""
    files = {
        "erdma_pd_private_probe.py": "SERVED_FROM = 'the private index'\n",
        "erdma_pd_private_probe-1.0.dist-info/METADATA":
            "Metadata-Version: 2.1\nName: erdma-pd-private-probe\nVersion: 1.0\n",
        "erdma_pd_private_probe-1.0.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: erdma.pd tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append("erdma_pd_private_probe-1.0.dist-info/RECORD,,")
    files["erdma_pd_private_probe-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    (directory / WHEEL).write_bytes(buffer.getvalue())


class PrivateIndex(http.server.SimpleHTTPRequestHandler):
    """A PEP 503 index that wants basic auth; remembers whether a request came with the right header."""
    authorised = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="private"')
            self.end_headers()
            return
        PrivateIndex.authorised.append(self.path)
        if self.path.rstrip("/") in ("/simple/erdma-pd-private-probe", "/simple/erdma_pd_private_probe"):
            body = f'<html><body><a href="/files/{WHEEL}">{WHEEL}</a></body></html>'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module", name="index")
def fixture_index(tmp_path_factory):
    files = tmp_path_factory.mktemp("index")
    (files / "files").mkdir()
    build_wheel(files / "files")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(PrivateIndex, directory=str(files)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()


def run_playbook(venv_dir, index_url):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    playbook = pathlib.Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run([str(playbook), "-vvv", "-i", "localhost,", str(PLAYBOOK), "-e", f"venv_dir={venv_dir}",
                           "-e", f"index_url={index_url}", "-e", "ansible_python_interpreter=/usr/bin/python3"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_the_index_refuses_a_client_without_the_credentials(index):
    anonymous = index.replace(f"{USER}:{PASSWORD}@", "") + "erdma-pd-private-probe/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=10)  # noqa: S310 (a local test server)
    assert refused.value.code == 401


def test_pip_gets_the_credentials_but_no_output_line_shows_them(index, tmp_path):
    venv_dir = tmp_path / "venv"
    first = run_playbook(venv_dir, index)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    assert PrivateIndex.authorised, "pip never asked the index with the credentials"
    assert list(venv_dir.glob("lib/python3*/site-packages/erdma_pd_private_probe.py")), "the package is missing"
    assert PASSWORD not in output, [line for line in output.splitlines() if PASSWORD in line][:3]
    assert "PIP_CONFIG_FILE" in output  # the environment pip got names the file, not the URL
    settings = pathlib.Path(f"{venv_dir}-etc") / f"pip{str(venv_dir).replace('/', '-')}.conf"
    assert oct(settings.stat().st_mode & 0o777) == oct(0o600) and settings.stat().st_uid == 0
    assert f"index-url = {index}" in settings.read_text().splitlines()

    again = run_playbook(venv_dir, index)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
    assert PASSWORD not in again.stdout + again.stderr
