"""Build the execution environment of execution-environment.yml for real, offline, on this machine.

    .venv/bin/python tests/awx/ee_build.py [--tag localhost/erdma-pd-ee:test] [--base IMAGE]

The definition is the repository's own; two inputs differ because this machine reaches neither a
container registry nor Galaxy: the base image (EE_BASE_IMAGE, default the lab's Debian 12 image that
lab/lab.py builds) and where the other collections come from (the ones the `ansible` package of the
control venv bundles, installed with `ansible-galaxy collection install --offline` from directories).
The image is labelled with a hash of everything it is built from and rebuilt only when that changes.
"""
import argparse
import hashlib
import json
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
DEFAULT_TAG = "localhost/erdma-pd-ee:test"
DEFAULT_BASE = "localhost/erdma-lab-debian12"
LABEL = "io.erdma-pd.ee-inputs"
# What erdma.pd uses from other collections (galaxy.yml's dependencies).
DEPENDENCIES = sorted(yaml.safe_load((ROOT / "galaxy.yml").read_text())["dependencies"])


def bundled_collection(fqcn):
    namespace, name = fqcn.split(".")
    return pathlib.Path(sysconfig.get_paths()["purelib"]) / "ansible_collections" / namespace / name


def run(cmd, **kw):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def build_tarball(out_dir):
    run([BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", out_dir, ROOT],
        stdout=subprocess.DEVNULL)
    return next(pathlib.Path(out_dir).glob("erdma-pd-*.tar.gz"))


def inputs_hash(work, base_image_id):
    """Everything the image is made of: definition, scripts, collection files (by content), base image."""
    digest = hashlib.sha256(base_image_id.encode())
    for path in sorted(work.rglob("*")):
        if path.is_file() and not path.name.endswith(".tar.gz"):
            digest.update(path.relative_to(work).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def tarball_digest(tarball):
    """FILES.json lists every file's sha256: a content hash of the tarball without its time stamps."""
    listing = subprocess.run(["tar", "-xOzf", str(tarball), "FILES.json"], check=True, capture_output=True).stdout
    return hashlib.sha256(listing).hexdigest()


def prepare(work):
    """The repository's definition in a build directory, with offline collection sources."""
    definition = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    (work / "ee").mkdir(parents=True)
    shutil.copy2(ROOT / "ee" / "apt-as-dnf", work / "ee" / "apt-as-dnf")
    tarball = build_tarball(work / "ee")
    requirements = [{"name": f"/build/collections/{fqcn.replace('.', '/')}", "type": "dir"} for fqcn in DEPENDENCIES]
    requirements.append({"name": f"/build/erdma-pd/{tarball.name}", "type": "file"})
    for fqcn in DEPENDENCIES:
        shutil.copytree(bundled_collection(fqcn), work / "collections" / fqcn.replace(".", "/"),
                        ignore=shutil.ignore_patterns("__pycache__", "tests"))
    (work / "ee" / "requirements.yml").write_text(yaml.safe_dump({"collections": requirements}))
    definition["additional_build_files"].append({"src": "collections", "dest": "collections"})
    (work / "execution-environment.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    (work / "ee" / "erdma-pd.files.sha256").write_text(tarball_digest(tarball))
    return tarball


def image_label(tag):
    res = subprocess.run(["podman", "image", "inspect", "--format", "{{index .Labels \"%s\"}}" % LABEL, tag],
                         capture_output=True, text=True, check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def base_image_id(base):
    res = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", base],
                         capture_output=True, text=True, check=False)
    if res.returncode:
        sys.exit(f"base image {base} is missing: build it with `python3 lab/lab.py images debian12`")
    return res.stdout.strip()


def label_image(tag, wanted, work):
    """The inputs hash goes on in a build of its own: as a build argument of ansible-builder's build it
    would be part of every step, and podman's layer cache (base image, ansible-core) would never hit."""
    (work / "Containerfile.label").write_text(f"FROM {tag}\n")
    run(["podman", "build", "-q", "-f", work / "Containerfile.label", "--label", f"{LABEL}={wanted}", "-t", tag,
         work], stdout=subprocess.DEVNULL)


def remove_stale_build_images():
    """Each build leaves untagged images behind (ansible-builder's galaxy and builder stages, the image a
    rebuild replaced): about 0.4 GB each, on a machine whose CI builds again. Ours are the untagged ones
    whose history installs ee/apt-as-dnf; the tagged EE keeps its layers (the cache of the next build)."""
    dangling = subprocess.run(["podman", "images", "--filter", "dangling=true", "--quiet", "--no-trunc"],
                              capture_output=True, text=True, check=False).stdout.split()
    for image in dangling:
        history = subprocess.run(["podman", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
                                 capture_output=True, text=True, check=False).stdout
        if "/usr/local/bin/apt-as-dnf" in history:
            # One image per call; one still in use stays.
            subprocess.run(["podman", "rmi", image], capture_output=True, check=False)


def build(tag=DEFAULT_TAG, base=DEFAULT_BASE):
    with tempfile.TemporaryDirectory(prefix="erdma-pd-ee-") as tmp:
        work = pathlib.Path(tmp)
        prepare(work)
        wanted = inputs_hash(work, base_image_id(base))
        if image_label(tag) == wanted:
            print(f"execution environment {tag} is current (inputs {wanted})", flush=True)
            return tag
        definition = yaml.safe_load((work / "execution-environment.yml").read_text())
        definition.setdefault("options", {})["tags"] = [tag]
        (work / "execution-environment.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
        started = time.monotonic()
        # podman's layer cache keeps the steps before the collections (base packages, ansible-core,
        # ansible-runner): a changed collection rebuilds only the steps from its tarball on.
        run([BIN / "ansible-builder", "build", "-f", work / "execution-environment.yml", "-c", work / "context",
             "--container-runtime", "podman", "-t", tag, "-v", "2",
             "--build-arg", f"EE_BASE_IMAGE={base}",
             # The collections come from directories in the build context: Galaxy is not asked.
             "--build-arg", "ANSIBLE_GALAXY_CLI_COLLECTION_OPTS=--offline"])
        label_image(tag, wanted, work)
        print(f"execution environment {tag} built in {time.monotonic() - started:.0f}s (inputs {wanted})", flush=True)
        remove_stale_build_images()
    return tag


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--base", default=DEFAULT_BASE, help="EE_BASE_IMAGE (default %(default)s)")
    args = parser.parse_args()
    print(json.dumps({"image": build(args.tag, args.base)}))


if __name__ == "__main__":
    main()
