"""The erdma.pd local lab: rootful podman, cached systemd base images, named nodes.

The lab is the embedded default that the main job runs on when a user has no GPU hosts:
systemd containers on one podman network with fixed addresses, built from debootstrap
root file systems. Every step prints what it does and how long it took; every step is
safe to re-run over state left by an earlier run (CI reuses machines).

    lab.py host      install and configure podman, debootstrap, the Ubuntu keyring
    lab.py images    build the base images whose recipe changed (cached by recipe hash)
    lab.py up        host + images + network + the nodes of the lab inventory
    lab.py down      remove the lab nodes and network (images stay cached)
    lab.py status    list lab nodes and images

Stdlib only: this runs before the project's venv exists.
"""
import argparse
import contextlib
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
CONTAINERS_CONF = pathlib.Path("/etc/containers/containers.conf")
RECIPE_LABEL = "io.erdma-pd.recipe"
LAB_LABEL = "io.erdma-pd.lab"

# The settings that podman needs on these machines (crun and default ulimits fail here).
# The lab network has an explicit subnet; networks that molecule scenarios create are
# drawn from the pool, which deliberately does not overlap it.
# netavark + aardvark-dns, named explicitly: podman 4.3 on Debian 12 otherwise picks CNI, and
# Debian ships no CNI dnsname plugin, so containers on one network could not resolve each other.
PODMAN_CONF = """\
# Managed by erdma.pd lab/lab.py: rootful podman settings that work on this host.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]

[network]
network_backend = "netavark"
default_subnet_pools = [{"base" = "10.89.64.0/18", "size" = 24}]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

HOST_PACKAGES = ["podman", "netavark", "aardvark-dns", "iptables", "debootstrap", "runc", "uidmap", "curl",
                 "make", "python3-venv", "python3-apt"]
BASE_PACKAGES = ["systemd", "systemd-sysv", "python3", "sudo", "iproute2", "ca-certificates",
                 "dbus", "iputils-ping", "procps"]

# name -> how to build it. The recipe (this dict plus the files it names) is hashed into the
# image label; an image is rebuilt only when that hash changes.
IMAGES = {
    "debian12": {"suite": "bookworm", "distro": "debian"},
    "ubuntu2204": {"suite": "jammy", "distro": "ubuntu"},
    "ubuntu2404": {"suite": "noble", "distro": "ubuntu", "script": "gutsy"},
    # Debian 12 plus vLLM's CPU build in a venv and the tiny model: the engines' node image.
    "vllm": {"from": "debian12", "containerfile": "images/vllm/Containerfile",
             "context": "images/vllm"},
}

# CAs this machine trusts beyond the distribution's (a TLS-inspecting proxy, a company CA):
# the nodes get them too, or pip and curl inside the lab fail where they work on the host.
LOCAL_CA_DIR = pathlib.Path("/usr/local/share/ca-certificates")

NETWORK = "erdma-lab"
SUBNET = "10.89.60.0/24"


def say(msg):
    print(f"[lab] {msg}", flush=True)


@contextlib.contextmanager
def step(title):
    started = time.monotonic()
    say(f"{title} ...")
    yield
    say(f"{title}: done in {time.monotonic() - started:.1f}s")


def run(cmd, check=True, capture=False, **kw):
    res = subprocess.run(cmd, check=False, text=True,
                         stdout=subprocess.PIPE if capture else None,
                         stderr=subprocess.PIPE if capture else None, **kw)
    if check and res.returncode != 0:
        detail = (res.stderr or "").strip() if capture else ""
        sys.exit(f"[lab] command failed ({res.returncode}): {' '.join(cmd)}\n{detail}")
    return res


def podman(*args, **kw):
    return run(["podman", *args], **kw)


# ---------------------------------------------------------------- host
def debian_mirror():
    """The Debian mirror this machine already uses, read from its apt configuration."""
    for path in sorted(pathlib.Path("/etc/apt").rglob("*")):
        if not path.is_file() or path.suffix not in (".sources", ".list"):
            continue
        text = path.read_text(errors="replace")
        match = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or \
            re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s+bookworm\b", text, re.M)
        if match:
            return match.group(1)
    sys.exit("[lab] no Debian mirror found in /etc/apt: cannot fetch ubuntu-keyring")


def apt_install(packages, extra=()):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *extra, *packages], env=env)


def ensure_host():
    missing = [p for p in HOST_PACKAGES if run(["dpkg", "-s", p], check=False, capture=True).returncode]
    if missing:
        with step(f"install host packages {' '.join(missing)}"):
            run(["apt-get", "update", "-q"])
            apt_install(missing)
    if not pathlib.Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg").exists():
        with step("install ubuntu-keyring from bookworm-backports"):
            src = pathlib.Path("/etc/apt/sources.list.d/erdma-lab-backports.list")
            src.write_text(f"deb {debian_mirror()} bookworm-backports main\n")
            run(["apt-get", "update", "-q"])
            apt_install(["ubuntu-keyring"], extra=["-t", "bookworm-backports"])
    if not CONTAINERS_CONF.exists() or CONTAINERS_CONF.read_text() != PODMAN_CONF:
        leave_cni_backend()
        with step(f"write {CONTAINERS_CONF}"):
            CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
            if CONTAINERS_CONF.exists():
                shutil.copy2(CONTAINERS_CONF, CONTAINERS_CONF.with_suffix(".conf.before-erdma-pd"))
            CONTAINERS_CONF.write_text(PODMAN_CONF)
    check_network_backend()
    say("host ready: podman (netavark, aardvark-dns), debootstrap, runc, ubuntu-keyring, containers.conf")


def leave_cni_backend():
    """Containers and networks made under CNI are invisible to netavark: remove them first.

    Only on a machine that ran podman with CNI before (a fresh one has nothing to remove); images stay.
    """
    if not shutil.which("podman"):
        return
    res = podman("info", "--format", "{{.Host.NetworkBackend}}", check=False, capture=True)
    if res.stdout.strip() != "cni":
        return
    with step("leave the CNI network backend: remove containers and networks made under it"):
        podman("rm", "-a", "-f", "-t", "5", check=False, capture=True)
        names = podman("network", "ls", "--format", "{{.Name}}", check=False, capture=True).stdout.split()
        for name in names:
            if name != "podman":
                podman("network", "rm", "-f", name, check=False, capture=True)


def check_network_backend():
    """Two containers on one scenario network must resolve each other by name (molecule needs it)."""
    res = podman("info", "--format", "{{.Host.NetworkBackend}}", capture=True)
    if res.stdout.strip() != "netavark":
        sys.exit(f"[lab] podman uses the {res.stdout.strip()!r} network backend, not netavark: "
                 f"containers on one network cannot resolve each other by name; check {CONTAINERS_CONF}")


# ---------------------------------------------------------------- images
def local_cas():
    return sorted(LOCAL_CA_DIR.rglob("*.crt")) if LOCAL_CA_DIR.is_dir() else []


def recipe_hash(name):
    recipe = dict(IMAGES[name], packages=BASE_PACKAGES)
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    for cert in local_cas():
        digest.update(cert.read_bytes())
    if "from" in recipe:
        digest.update(recipe_hash(recipe["from"]).encode())
        for path in sorted((HERE / recipe["context"]).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(HERE).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def image_ref(name):
    return f"localhost/erdma-lab-{name}"


def current_recipe(name):
    res = podman("image", "inspect", "--format", "{{index .Labels \"%s\"}}" % RECIPE_LABEL,
                 image_ref(name), check=False, capture=True)
    return res.stdout.strip() if res.returncode == 0 else None


def build_rootfs_image(name, spec, wanted):
    with tempfile.TemporaryDirectory(prefix=f"lab-{name}-", dir="/var/tmp") as root:
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
        if spec["distro"] == "ubuntu":
            cmd += ["--keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg",
                    "--components=main,universe"]
        # No mirror argument: debootstrap's default for the suite (no host name in the repo).
        cmd += [spec["suite"], root]
        if "script" in spec:
            # Passing a script needs the mirror slot filled: the empty string keeps the default.
            cmd += ["", f"/usr/share/debootstrap/scripts/{spec['script']}"]
        run(cmd, capture=True)
        rootfs = pathlib.Path(root)
        (rootfs / "etc/machine-id").write_text("")
        trust_local_cas(rootfs)
        # Nodes need no getty on a console that does not exist.
        for unit in ("getty@tty1.service", "console-getty.service"):
            with contextlib.suppress(FileNotFoundError):
                (rootfs / "etc/systemd/system/getty.target.wants" / unit).unlink()
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        run(["podman", "import", "--change", 'CMD ["/sbin/init"]',
             "--change", "STOPSIGNAL SIGRTMIN+3",
             "--change", f"LABEL {RECIPE_LABEL}={wanted}",
             "-", image_ref(name)], stdin=tar.stdout, capture=True)
        tar.wait()


def trust_local_cas(rootfs):
    certs = local_cas()
    if not certs:
        return
    target = rootfs / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    for cert in certs:
        shutil.copy2(cert, target / cert.name)
    run(["chroot", str(rootfs), "update-ca-certificates"], capture=True)
    say(f"nodes trust this machine's local CAs: {', '.join(c.name for c in certs)}")


def build_derived_image(name, spec, wanted):
    cmd = ["podman", "build", "--layers", "-f", str(HERE / spec["containerfile"]),
           "--build-arg", f"BASE={image_ref(spec['from'])}",
           "--label", f"{RECIPE_LABEL}={wanted}", "-t", image_ref(name)]
    # The host's wheel directory (PyTorch's CPU build lies there) is lent to the build.
    wheels = os.environ.get("PIP_FIND_LINKS", "/opt/wheels")
    if os.path.isdir(wheels):
        cmd += ["-v", f"{wheels}:/opt/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/opt/wheels"]
    run(cmd + [str(HERE / spec["context"])])


def ensure_image(name):
    spec = IMAGES[name]
    if "from" in spec:
        ensure_image(spec["from"])
    wanted = recipe_hash(name)
    if current_recipe(name) == wanted:
        say(f"image {image_ref(name)} is current (recipe {wanted})")
        return
    with step(f"build image {image_ref(name)} (recipe {wanted})"):
        if "from" in spec:
            build_derived_image(name, spec, wanted)
        else:
            build_rootfs_image(name, spec, wanted)


# ---------------------------------------------------------------- nodes
def lab_nodes(inventory):
    """Nodes of the lab inventory: name -> (image, ip). Read from hosts.yml without a YAML lib."""
    nodes = {}
    current = None
    for line in (inventory / "hosts.yml").read_text().splitlines():
        m = re.match(r"^\s+(erdma-lab-[\w-]+):\s*$", line)
        if m:
            current = m.group(1)
            nodes.setdefault(current, {})
            continue
        m = re.match(r"^\s+lab_(image|ip):\s*(\S+)", line)
        if m and current:
            nodes[current][m.group(1)] = m.group(2)
    return {n: v for n, v in nodes.items() if "image" in v and "ip" in v}


def ensure_network():
    res = podman("network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}",
                 NETWORK, check=False, capture=True)
    if res.returncode == 0 and res.stdout.strip() == SUBNET:
        return
    if res.returncode == 0:
        podman("network", "rm", "-f", NETWORK)
    podman("network", "create", "--subnet", SUBNET, "--label", f"{LAB_LABEL}=1", NETWORK)


def node_state(name):
    res = podman("container", "inspect", "--format",
                 '{{.State.Status}} {{.ImageName}} {{index .Config.Labels "%s"}}' % RECIPE_LABEL,
                 name, check=False, capture=True)
    return res.stdout.split() if res.returncode == 0 else None


def wait_for_systemd(name, timeout=90):
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        res = podman("exec", name, "systemctl", "is-system-running", check=False, capture=True)
        state = res.stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)
    sys.exit(f"[lab] {name}: systemd did not come up within {timeout}s (state: {state or 'unknown'})")


def ensure_node(name, image, ip):
    ref = image_ref(image)
    # The run options are part of what a node must match (a node from before NET_ADMIN is recreated).
    wanted = f"{recipe_hash(image)}-{ip}-netadmin"
    state = node_state(name)
    if state and state[0] == "running" and state[-1] == wanted:
        say(f"node {name} ({ip}, {image}) is up")
        return
    if state:
        podman("rm", "-f", "-t", "5", name, capture=True)
    with step(f"start node {name} ({ip}, {image})"):
        podman("run", "-d", "--name", name, "--hostname", name, "--systemd=always",
               "--network", NETWORK, "--ip", ip, "--label", f"{LAB_LABEL}=1",
               "--label", f"{RECIPE_LABEL}={wanted}",
               # vLLM's multiprocess queues need more than podman's 64 MiB of /dev/shm.
               "--shm-size", "1g",
               # The Mooncake master's nftables allow-list (on by default); the node's own netns only.
               "--cap-add", "NET_ADMIN",
               "--tmpfs", "/tmp", "--tmpfs", "/run", "--tmpfs", "/run/lock",
               ref, "/sbin/init", capture=True)
        say(f"{name}: systemd {wait_for_systemd(name)}")


def up(args):
    ensure_host()
    nodes = lab_nodes(args.inventory)
    for image in sorted({n["image"] for n in nodes.values()}):
        ensure_image(image)
    with step(f"network {NETWORK} ({SUBNET})"):
        ensure_network()
    for name, node in sorted(nodes.items()):
        ensure_node(name, node["image"], node["ip"])


def down(args):
    names = podman("ps", "-a", "--filter", f"label={LAB_LABEL}=1", "--format", "{{.Names}}",
                   capture=True).stdout.split()
    with step(f"remove nodes {' '.join(names) or '(none)'}"):
        if names:
            podman("rm", "-f", "-t", "5", *names, capture=True)
    if podman("network", "exists", NETWORK, check=False).returncode == 0:
        podman("network", "rm", "-f", NETWORK, capture=True)


def status(args):
    podman("ps", "-a", "--filter", f"label={LAB_LABEL}=1")
    podman("images", "--filter", "reference=localhost/erdma-lab-*")


def images(args):
    ensure_host()
    for name in args.names or list(IMAGES):
        ensure_image(name)
    if not args.names:
        check_names_resolve()


def check_names_resolve():
    """Prove what molecule scenarios rely on: a container finds another one of its network by name."""
    net, peer = "erdma-lab-dnscheck", "erdma-lab-dnscheck-peer"
    podman("rm", "-f", "-t", "0", peer, check=False, capture=True)
    podman("network", "rm", "-f", net, check=False, capture=True)
    with step("containers on one network resolve each other by name"):
        podman("network", "create", net, capture=True)
        try:
            podman("run", "-d", "--name", peer, "--network", net, image_ref("debian12"), "sleep", "60",
                   capture=True)
            res = podman("run", "--rm", "--network", net, image_ref("debian12"), "getent", "hosts", peer,
                         check=False, capture=True)
            if res.returncode != 0:
                sys.exit(f"[lab] a container cannot resolve {peer} on network {net}: molecule scenarios "
                         f"that reach each other by name would fail (podman network backend, aardvark-dns)")
            say(f"{peer} -> {res.stdout.split()[0]}")
        finally:
            podman("rm", "-f", "-t", "0", peer, check=False, capture=True)
            podman("network", "rm", "-f", net, check=False, capture=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=pathlib.Path, default=HERE.parent / "inventories" / "lab")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("host").set_defaults(func=lambda a: ensure_host())
    img = sub.add_parser("images")
    img.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(IMAGES)}")
    img.set_defaults(func=images)
    sub.add_parser("up").set_defaults(func=up)
    sub.add_parser("down").set_defaults(func=down)
    sub.add_parser("status").set_defaults(func=status)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("[lab] the lab runs rootful podman: run as root")
    started = time.monotonic()
    args.func(args)
    say(f"{args.cmd}: total {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
