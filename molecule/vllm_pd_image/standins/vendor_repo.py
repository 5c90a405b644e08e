"""The STAND-IN for the eRDMA vendor's apt repository that the vllm_pd_image scenario builds and serves.

The guide installs the eRDMA userspace inside the engine image from the vendor's repository
(`deb [...] <vendor>/erdma/apt/ubuntu jammy/erdma main`, key at <vendor>/erdma/GPGKEY). That repository
cannot be reached from here. This builds one with the same layout, signed by a throw-away key:

    <out>/erdma/GPGKEY                                  armoured public key of the throw-away key
    <out>/erdma/apt/ubuntu/dists/jammy/erdma/           signed InRelease/Release, main/binary-amd64/Packages
    <out>/erdma/apt/ubuntu/pool/main/                   the packages
    <out>/fingerprint                                   the throw-away key's fingerprint

The packages are REAL rdma-core binaries, not fakes: Debian 12's libibverbs1, ibverbs-providers,
ibverbs-utils and librdmacm1 44.0-2 (fetched with `apt-get download` on this Debian 12 machine), whose
ibverbs-providers carries libibverbs/liberdma-rdmav34.so and which need only glibc >= 2.34 (Ubuntu
22.04 has 2.35). Like the vendor's packages, their version is above Ubuntu 22.04's rdma-core 39, so
apt takes them from this repository. `eadm` is the stand-in of molecule/erdma_driver/standins/build_mirror.py,
which says that it is one.

    python3 vendor_repo.py build OUT            build the repository
    python3 vendor_repo.py serve OUT PORT PIDFILE   serve OUT on 127.0.0.1:PORT in the background
    python3 vendor_repo.py stop PIDFILE [PORT]  stop that server (and, given PORT, a stale one on PORT)

Needs apt-get, dpkg-deb, dpkg-scanpackages and gpg.
"""
import email.utils
import functools
import gzip
import hashlib
import http.server
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
# The stand-in eadm package is the one the erdma_driver scenario's stand-in mirror builds.
sys.path.insert(0, str(HERE.parent.parent / "erdma_driver" / "standins"))
import build_mirror  # noqa: E402  pylint: disable=wrong-import-position

SUITE = "jammy/erdma"
RDMA_CORE = ("libibverbs1", "ibverbs-providers", "ibverbs-utils", "librdmacm1")
MTIME = 1767225600


def run(argv, **kw):
    subprocess.run(argv, check=True, **kw)


def fetch_rdma_core(pool):
    """Debian 12's real rdma-core packages, into the pool (apt-get download needs a writable cwd)."""
    run(["apt-get", "download", "-q", *RDMA_CORE], cwd=str(pool), stdout=subprocess.DEVNULL)


def write_release(dist, gpg_env):
    binary = dist / "main" / "binary-amd64"
    lines = ["Origin: erdma.pd stand-in", "Label: erdma.pd stand-in", "Suite: %s" % SUITE,
             "Codename: %s" % SUITE, "Date: %s" % email.utils.formatdate(time.time() - 3600, usegmt=True),
             "Architectures: amd64", "Components: main",
             "Description: STAND-IN eRDMA vendor repository (erdma.pd molecule scenario vllm_pd_image)", "SHA256:"]
    for path in (binary / "Packages", binary / "Packages.gz"):
        data = path.read_bytes()
        lines.append(" %s %d %s" % (hashlib.sha256(data).hexdigest(), len(data), path.relative_to(dist).as_posix()))
    (dist / "Release").write_text("\n".join(lines) + "\n")
    run(["gpg", "--batch", "--yes", "--clearsign", "-o", str(dist / "InRelease"), str(dist / "Release")], env=gpg_env)


def build(out):
    if out.exists():
        shutil.rmtree(out)
    repo = out / "erdma" / "apt" / "ubuntu"
    pool = repo / "pool" / "main"
    pool.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="erdma-vendor-standin-") as tmp:
        work = pathlib.Path(tmp)
        fetch_rdma_core(pool)
        build_mirror.build_eadm_deb(pool, work)
        packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool", "/dev/null"], cwd=str(repo),
                                  check=True, capture_output=True).stdout
        dist = repo / "dists" / SUITE
        binary = dist / "main" / "binary-amd64"
        binary.mkdir(parents=True)
        (binary / "Packages").write_bytes(packages)
        with gzip.GzipFile(binary / "Packages.gz", "wb", mtime=MTIME) as gz:
            gz.write(packages)
        home = work / "gnupg"
        home.mkdir(mode=0o700)
        gpg_env = dict(os.environ, GNUPGHOME=str(home))
        try:
            run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                 "erdma.pd vllm_pd_image STAND-IN vendor key <standin@example.invalid>", "rsa3072", "sign", "1d"],
                env=gpg_env, stderr=subprocess.DEVNULL)
            with open(out / "erdma" / "GPGKEY", "wb") as key:
                run(["gpg", "--batch", "--armor", "--export"], env=gpg_env, stdout=key)
            write_release(dist, gpg_env)
            colons = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"], env=gpg_env, check=True,
                                    capture_output=True, text=True).stdout
        finally:
            subprocess.run(["gpgconf", "--kill", "all"], env=gpg_env, check=False)
    fingerprint = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    (out / "fingerprint").write_text(fingerprint + "\n")
    names = ", ".join(sorted(p.name for p in pool.iterdir()))
    print("stand-in vendor repository in %s: %s, key %s" % (out, names, fingerprint))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(out, port, pidfile):
    """Fork a server on 127.0.0.1:PORT for OUT and return once it answers.

    The socket is bound here, before the fork: a server left behind on PORT by an interrupted earlier run
    (serving an older throw-away key) makes this fail loudly instead of answering the probe below in our
    place, which would turn into a baffling fingerprint mismatch in converge."""
    handler = functools.partial(QuietHandler, directory=str(out))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        sys.exit("cannot serve the stand-in repository on 127.0.0.1:%d (%s): another process holds the port "
                 "(a stand-in server of an interrupted earlier run? `ss -ltnp 'sport = :%d'` names it)"
                 % (port, err, port))
    pid = os.fork()
    if pid == 0:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        server.serve_forever()
        os._exit(0)
    server.server_close()  # the child serves; the parent keeps no copy of the socket
    pathlib.Path(pidfile).write_text("%d\n" % pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run(["python3", "-c", "import urllib.request,sys;urllib.request.urlopen(sys.argv[1])",
                                "http://127.0.0.1:%d/erdma/GPGKEY" % port], capture_output=True, check=False)
        if probe.returncode == 0:
            print("serving %s on 127.0.0.1:%d (pid %d)" % (out, port, pid))
            return
        time.sleep(0.2)
    sys.exit("the stand-in repository server did not answer on 127.0.0.1:%d" % port)


def stop(pidfile, port=None):
    """Stop the server of PIDFILE and, given PORT, any stand-in server still serving PORT from an earlier
    run that was interrupted before its cleanup (its pid file is gone or names another process)."""
    path = pathlib.Path(pidfile)
    pids = set()
    if path.exists():
        try:
            pids.add(int(path.read_text().strip()))
        except ValueError:
            pass
        path.unlink()
    if port is not None:
        pids.update(stand_in_servers(port))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def stand_in_servers(port):
    """Pids of processes started as `vendor_repo.py serve OUT PORT ...` for this PORT."""
    found = []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        names = [pathlib.Path(arg).name for arg in argv]
        if "vendor_repo.py" in names:
            at = names.index("vendor_repo.py")
            if argv[at + 1:at + 2] == ["serve"] and argv[at + 3:at + 4] == [str(port)] and int(proc.name) != os.getpid():
                found.append(int(proc.name))
    return found


def main():
    command = sys.argv[1]
    if command == "build":
        build(pathlib.Path(sys.argv[2]).resolve())
    elif command == "serve":
        serve(pathlib.Path(sys.argv[2]).resolve(), int(sys.argv[3]), sys.argv[4])
    elif command == "stop":
        stop(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
