"""The proxy package builds as the role installs it: offline, no build isolation, flit_core as backend."""
import subprocess
import sys
import zipfile

from proxy_lab import PACKAGE_DIR


def test_the_package_builds_offline_into_a_wheel_with_its_modules_and_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-index", "--no-deps",
                           "--no-build-isolation", "--wheel-dir", str(tmp_path), str(PACKAGE_DIR)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("erdma_pd_proxy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("__init__", "__main__", "app", "backends", "cli", "config", "exchange", "metrics"):
        assert f"erdma_pd_proxy/{module}.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "pd-proxy=erdma_pd_proxy.cli:main" in entry_points.replace(" ", "")
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: aiohttp" in metadata and "Requires-Dist: prometheus_client" in metadata
    assert not any(PACKAGE_DIR.rglob("__pycache__")), "building left bytecode in the role's files"
