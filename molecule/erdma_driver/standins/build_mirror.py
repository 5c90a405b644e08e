"""Builds the STAND-IN eRDMA mirror that the molecule scenario erdma_driver serves over HTTPS.

The real mirror (http://mirrors.aliyun.com/erdma) carries vendor installers and kernel sources that
cannot do anything in a container. This builds files with the same names and the same layout, each
saying that it is a stand-in:

    <out>/erdma/GPGKEY                              armoured public key of a throw-away signing key
    <out>/erdma/apt/ubuntu/dists/<codename>/erdma/  signed Release/InRelease, main/binary-amd64/Packages
    <out>/erdma/apt/ubuntu/pool/main/e/eadm/        eadm_0.0.0~standin_all.deb (prints that it is a stand-in)
    <out>/erdma/kernel-fix/deb/MLNX_OFED_SRC-debian-24.10-3.2.5.0.tgz
                                                    MLNX_OFED_SRC-24.10-3.2.5.0/SOURCES/<stock kernel tarball>
    <out>/erdma/kernel-fix/deb/ofed_debian.conf
    <out>/erdma/kernel-fix/deb/mlnx-ofed-kernel_24.10.egs.1.OFED.24.10.3.2.5.1.orig.tar.gz
    <out>/erdma/env_setup.sh                        the stand-in installer next to this file
    <out>/erdma/erdma_installer-1.4.3.tar.gz
    <out>/checksums.json                            {file name: "sha256:<hex>"} of the install artefacts
    <out>/key.json                                  {"fingerprint": ...} of the repository signing key
    <out>/tls/ca.crt, server.crt, server.key        a throw-away CA and the mirror's certificate (drv-mirror)
    <out>/erdma.tar.gz                              all of <out>/erdma, for shipping to the mirror node

Usage: python3 build_mirror.py OUT_DIR. Needs gpg, openssl, dpkg-deb and dpkg-scanpackages on the
control node.
"""
import email.utils
import gzip
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
OFED_VERSION = "24.10-3.2.5.0"
STOCK_KERNEL = "mlnx-ofed-kernel_24.10.OFED.24.10.3.2.5.1.orig.tar.gz"
EGS_KERNEL = "mlnx-ofed-kernel_24.10.egs.1.OFED.24.10.3.2.5.1.orig.tar.gz"
INSTALLER = "erdma_installer-1.4.3.tar.gz"
CODENAMES = ("jammy", "noble")
NOTE = "STAND-IN built by erdma.pd molecule/erdma_driver/standins/build_mirror.py; not the vendor's file.\n"
MTIME = 1767225600  # fixed, so that the tarballs (and their checksums) are the same on every build


def tarball(path, members):
    """A gzipped tar of {name: bytes}, deterministic."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = set()
        for name in sorted(members):
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in dirs:
                    dirs.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
                    tar.addfile(info)
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, MTIME
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=MTIME, filename="") as gz:
            gz.write(buf.getvalue())


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(argv, **kw):
    subprocess.run(argv, check=True, **kw)


def build_artefacts(mirror):
    kernel_fix = mirror / "kernel-fix" / "deb"
    inner = kernel_fix / ".stock.tmp"
    tarball(inner, {"mlnx-ofed-kernel-24.10.OFED.24.10.3.2.5.1/STAND-IN": NOTE.encode()})
    stock = inner.read_bytes()
    inner.unlink()
    top = "MLNX_OFED_SRC-%s" % OFED_VERSION
    tarball(kernel_fix / ("MLNX_OFED_SRC-debian-%s.tgz" % OFED_VERSION), {
        top + "/STAND-IN": NOTE.encode(),
        top + "/SOURCES/" + STOCK_KERNEL: stock,
    })
    (kernel_fix / "ofed_debian.conf").write_text("# " + NOTE)
    tarball(kernel_fix / EGS_KERNEL, {"mlnx-ofed-kernel-24.10.egs.1/STAND-IN": NOTE.encode()})
    tarball(mirror / INSTALLER, {"erdma_installer/STAND-IN": NOTE.encode()})
    shutil.copy(HERE / "env_setup.sh", mirror / "env_setup.sh")
    names = {
        "MLNX_OFED_SRC-debian-%s.tgz" % OFED_VERSION: kernel_fix,
        "ofed_debian.conf": kernel_fix,
        EGS_KERNEL: kernel_fix,
        "env_setup.sh": mirror,
        INSTALLER: mirror,
    }
    return {name: "sha256:" + sha256(directory / name) for name, directory in names.items()}


def build_eadm_deb(pool, work):
    root = work / "eadm"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: eadm\nVersion: 0.0.0~standin\nArchitecture: all\n"
        "Maintainer: erdma.pd molecule <standin@example.invalid>\n"
        "Description: STAND-IN for the eRDMA admin tool\n"
        " Built by the erdma.pd molecule scenario erdma_driver; prints that it is a stand-in.\n")
    tool = root / "usr" / "bin" / "eadm"
    tool.write_text("#!/bin/sh\necho 'eadm STAND-IN from the erdma.pd molecule mirror'\n")
    tool.chmod(0o755)
    pool.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root),
         str(pool / "eadm_0.0.0~standin_all.deb")], stdout=subprocess.DEVNULL)


def build_apt_repo(mirror, work, gpg_env):
    repo = mirror / "apt" / "ubuntu"
    build_eadm_deb(repo / "pool" / "main" / "e" / "eadm", work)
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool", "/dev/null"], cwd=repo,
                              check=True, capture_output=True).stdout
    for codename in CODENAMES:
        dist = repo / "dists" / codename / "erdma"
        binary = dist / "main" / "binary-amd64"
        binary.mkdir(parents=True)
        (binary / "Packages").write_bytes(packages)
        with gzip.GzipFile(binary / "Packages.gz", "wb", mtime=MTIME) as gz:
            gz.write(packages)
        lines = ["Origin: erdma.pd stand-in", "Label: erdma.pd stand-in", "Suite: %s/erdma" % codename,
                 "Codename: %s/erdma" % codename,
                 "Date: %s" % email.utils.formatdate(time.time() - 3600, usegmt=True),
                 "Architectures: amd64", "Components: main",
                 "Description: STAND-IN eRDMA repository for the erdma.pd molecule scenario", "SHA256:"]
        for name in ("main/binary-amd64/Packages", "main/binary-amd64/Packages.gz"):
            data = (dist / name).read_bytes()
            lines.append(" %s %d %s" % (hashlib.sha256(data).hexdigest(), len(data), name))
        (dist / "Release").write_text("\n".join(lines) + "\n")
        run(["gpg", "--batch", "--yes", "--clearsign", "-o", str(dist / "InRelease"), str(dist / "Release")],
            env=gpg_env)
        run(["gpg", "--batch", "--yes", "-abs", "-o", str(dist / "Release.gpg"), str(dist / "Release")],
            env=gpg_env)


def build_tls(out):
    """A throw-away CA and a certificate for the mirror node, as a private mirror behind its own CA has."""
    tls = out / "tls"
    tls.mkdir()
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         "/CN=erdma.pd molecule STAND-IN mirror CA", "-keyout", str(tls / "ca.key"), "-out", str(tls / "ca.crt"),
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        **quiet)
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=drv-mirror",
         "-keyout", str(tls / "server.key"), "-out", str(tls / "server.csr")], **quiet)
    (tls / "server.ext").write_text("subjectAltName=DNS:drv-mirror\nextendedKeyUsage=serverAuth\n"
                                    "basicConstraints=CA:FALSE\n")
    run(["openssl", "x509", "-req", "-in", str(tls / "server.csr"), "-CA", str(tls / "ca.crt"),
         "-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(tls / "server.ext"),
         "-out", str(tls / "server.crt")], **quiet)
    (tls / "ca.key").unlink()  # nothing else is ever signed with it


def key_fingerprint(gpg_env):
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"], env=gpg_env, check=True,
                             capture_output=True, text=True).stdout
    return [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")][0]


def main():
    out = pathlib.Path(sys.argv[1]).resolve()
    if out.exists():
        shutil.rmtree(out)
    mirror = out / "erdma"
    mirror.mkdir(parents=True)
    checksums = build_artefacts(mirror)
    with tempfile.TemporaryDirectory(prefix="erdma-standin-") as tmp:
        work = pathlib.Path(tmp)
        home = work / "gnupg"
        home.mkdir(mode=0o700)
        gpg_env = dict(os.environ, GNUPGHOME=str(home))
        try:
            run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                 "erdma.pd molecule STAND-IN repository key <standin@example.invalid>", "rsa3072", "sign",
                 "1d"], env=gpg_env, stderr=subprocess.DEVNULL)
            with open(mirror / "GPGKEY", "wb") as key:
                run(["gpg", "--batch", "--armor", "--export"], env=gpg_env, stdout=key)
            (out / "key.json").write_text(json.dumps({"fingerprint": key_fingerprint(gpg_env)}) + "\n")
            build_apt_repo(mirror, work, gpg_env)
        finally:
            subprocess.run(["gpgconf", "--kill", "all"], env=gpg_env, check=False)
    build_tls(out)
    (out / "checksums.json").write_text(json.dumps(checksums, indent=2, sort_keys=True) + "\n")
    # One file to ship to the mirror node (one transfer instead of one per file).
    shutil.make_archive(str(out / "erdma"), "gztar", root_dir=str(out), base_dir="erdma")
    print("stand-in mirror in %s: %d artefacts, apt suites %s" % (out, len(checksums), ", ".join(CODENAMES)))


if __name__ == "__main__":
    main()
