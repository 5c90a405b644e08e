"""Every quality gate of erdma.pd, in order, with per-stage timings.

    python3 tests/run.py                 all stages
    python3 tests/run.py units lint      only these stages
    python3 tests/run.py --list          the stages

A stage fails the run; the summary names the stage and how long each one took.
Stdlib only: the first stage creates the venv that the others use.
"""
import argparse
import collections
import hashlib
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"

# Molecule scenarios, cheapest first; each is create -> converge -> idempotence -> verify -> destroy.
SCENARIOS = [s.strip() for s in os.environ.get("ERDMA_PD_SCENARIOS", "").split(",") if s.strip()]


def venv_env():
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["VIRTUAL_ENV"] = str(VENV)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    env["PY_COLORS"] = "0"
    return env


def sh(*cmd, env=None, cwd=ROOT):
    print(f"+ {' '.join(str(c) for c in cmd)}", flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or venv_env(), check=False).returncode


def ensure_venv():
    """Create .venv from requirements.txt; reuse it while the requirements are unchanged."""
    want = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()
    stamp = VENV / ".requirements.sha256"
    if stamp.exists() and stamp.read_text() == want and (BIN / "ansible-playbook").exists():
        print(f"venv {VENV} is current", flush=True)
        return 0
    if not (BIN / "python").exists():
        rc = sh(sys.executable, "-m", "venv", VENV, env=os.environ)
        if rc:
            return rc
    rc = sh(BIN / "pip", "install", "-q", "-r", ROOT / "requirements.txt")
    if rc == 0:
        stamp.write_text(want)
    return rc


def stage_bootstrap():
    return sh(sys.executable, ROOT / "lab/lab.py", "host", env=os.environ) or ensure_venv()


def stage_units():
    # pytest exits 5 when it collected nothing: a run that tests nothing fails.
    return sh(BIN / "pytest", "-q", "-p", "no:cacheprovider", "tests/unit")


def stage_yamllint():
    return sh(BIN / "yamllint", "-s", ".")


def checkout_collections_env():
    """The checkout as erdma.pd for tools that syntax-check playbooks outside site.yml's and playbooks/'s
    directories (molecule scenarios): ansible.cfg leaves collections/ out of collections_path on purpose."""
    env = venv_env()
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / "collections")
    # ansible-lint puts ~/.ansible/collections before every other path: an erdma.pd installed there (the
    # README's `ansible-galaxy collection install`) would shadow the checkout. A home of its own keeps
    # the lint on this checkout.
    home = ROOT / ".cache" / "lint-home"
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    return env


def stage_lint():
    return sh(BIN / "ansible-lint", "--profile", "production", "--offline", env=checkout_collections_env())


def stage_ansible_test():
    """ansible-test sanity and units through antsibull-nox (noxfile.py); its venvs are reused."""
    return sh(BIN / "nox", "--reuse-venv", "yes", "-s", "ansible-test-sanity", "ansible-test-units")


def stage_galaxy():
    return sh("bash", ROOT / "tests/galaxy_smoke.sh")


def stage_integration():
    """Beyond the control venv: LMCache 0.3.9's own loader on the role's YAML (its venv cached)."""
    return sh(BIN / "pytest", "-q", "-p", "no:cacheprovider", "tests/integration")


def stage_images():
    return sh(sys.executable, ROOT / "lab/lab.py", "images", env=os.environ)


# What failed and where, repeated as the very last lines of the run (CI logs are read from their end).
FAILURE_DIGEST = []


def stage_molecule():
    """Every scenario runs, also after one failed, and the summary shows each one's result."""
    scenarios = SCENARIOS or sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
    if not scenarios:
        print("no molecule scenario found: nothing would be tested", flush=True)
        return 1
    results = []
    for name in scenarios:
        started = time.monotonic()
        rc, tail = sh_keeping_tail(BIN / "molecule", "test", "-s", name)
        results.append((name, time.monotonic() - started, rc, tail))
        print(f"== molecule {name}: {'ok' if rc == 0 else 'FAILED'} in {results[-1][1]:.0f}s", flush=True)
    # A CI log is often read only from its end: the failed tasks go to FAILURE_DIGEST, printed last by main().
    for name, _seconds, rc, tail in results:
        if rc:
            failures = [line for line in tail if "fatal:" in line or "FAILED!" in line or "CRITICAL" in line]
            print(f"\n===== molecule {name} failed (rc={rc}); its last lines =====")
            print("\n".join(list(tail)[-40:]), flush=True)
            FAILURE_DIGEST.append(f"molecule {name} (rc={rc}), its failed tasks:")
            FAILURE_DIGEST.extend("  " + line[:400] for line in failures[-6:])
    print("\n===== molecule scenarios =====")
    for name, seconds, rc, _tail in results:
        print(f"{name:<20} {seconds:8.1f}s  {'ok' if rc == 0 else f'FAILED (rc={rc})'}", flush=True)
    return max(result[2] for result in results)


def sh_keeping_tail(*cmd, lines=2000):
    """sh() that also keeps the command's last output lines (stdout and stderr, interleaved)."""
    print(f"+ {' '.join(str(c) for c in cmd)}", flush=True)
    tail = collections.deque(maxlen=lines)
    with subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=venv_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            tail.append(line.rstrip("\n")[:600])
    sys.stdout.flush()
    return proc.returncode, tail


def stage_awx():
    """erdma.pd as AWX runs it: the EE built with ansible-builder, erdma.pd.site through ansible-runner
    in it against the lab of `lab.py up` (converge, re-run with changed=0), each job template's playbook
    with its survey defaults in --check (changed=0 on the converged lab), and the release tarball's erdma.pd.site
    in --check."""
    return sh(BIN / "pytest", "-q", "-p", "no:cacheprovider", "--durations=0", "tests/awx")


STAGES = {
    "bootstrap": stage_bootstrap,
    "units": stage_units,
    "yamllint": stage_yamllint,
    "lint": stage_lint,
    "ansible-test": stage_ansible_test,
    "galaxy": stage_galaxy,
    "integration": stage_integration,
    "images": stage_images,
    "molecule": stage_molecule,
    "awx": stage_awx,
}
# Stages that run only when named (none today: `awx` joined `make test` once it passed here, ~8 min).
OPT_IN = set()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stages", nargs="*", metavar="STAGE", help=f"any of {', '.join(STAGES)}")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--keep-going", action="store_true", help="run the later stages after a failure")
    args = parser.parse_args()
    if args.list:
        print("\n".join(STAGES))
        return 0
    wanted = args.stages or [name for name in STAGES if name not in OPT_IN]
    if "bootstrap" not in wanted and not (BIN / "ansible-playbook").exists():
        wanted.insert(0, "bootstrap")
    timings = []
    total = time.monotonic()
    failed = []
    for name in wanted:
        print(f"\n===== stage {name} =====", flush=True)
        started = time.monotonic()
        rc = STAGES[name]()
        timings.append((name, time.monotonic() - started, rc))
        if rc:
            failed.append(name)
            if not args.keep_going:
                break
    print("\n===== stage timings =====")
    for name, seconds, rc in timings:
        print(f"{name:<14} {seconds:8.1f}s  {'ok' if rc == 0 else f'FAILED (rc={rc})'}")
    print(f"{'total':<14} {time.monotonic() - total:8.1f}s")
    if failed:
        if FAILURE_DIGEST:
            print("\n===== where it failed =====\n" + "\n".join(FAILURE_DIGEST))
        print(f"\nfailed: {' '.join(failed)}; re-run one alone with `python3 tests/run.py {failed[0]}`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
