"""The eRDMA textfile writer on the recorded shapes of eadm and ibv_devinfo output (tests/unit/fixtures).

The commands are replayed by stand-ins (small scripts that print a fixture), because no eRDMA NIC exists
here; the parsing, the text format and the atomic write are the real code.
"""
import os
import pathlib
import stat
import sys

# The helper module sits next to this file (the tests run under pytest and ansible-test units).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_files import FIXTURES, REPORT_FILE, ROOT, TEXTFILE_FILE, load  # noqa: E402  pylint: disable=wrong-import-position

textfile = load(TEXTFILE_FILE, "erdma_textfile")
report = load(REPORT_FILE, "pd_bench_report")

STAT = (FIXTURES / "eadm" / "stat_reconstructed.txt").read_text()
ROLE = ROOT / "roles" / "pd_monitoring"
QUOTE = (FIXTURES / "eadm" / "stat_exporter_quote.txt").read_text()
DEVINFO = (FIXTURES / "ibv_devinfo" / "erdma_guide_verbose.txt").read_text()


def standin(tmp_path, name, fixture, rc=0):
    """A stand-in command that prints a recorded output (and records its arguments)."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/{name}.args\ncat {fixture}\nexit {rc}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_every_eadm_counter_becomes_a_labelled_counter_sample():
    lines = textfile.device_lines("erdma_0", STAT, DEVINFO)
    parsed = report.parse_prometheus("\n".join(lines["stat"]))
    samples = dict(parsed["erdma_stat_total"])
    counters = [line.split(":")[0].strip() for line in STAT.splitlines() if ":" in line]
    assert len(samples) == len(set(counters)) == 44
    assert samples['{device="erdma_0",counter="connect_failed_cnt"}'] == 2
    assert samples['{device="erdma_0",counter="cmdq_submitted_cnt"}'] == 1841
    assert lines["up"] == ['erdma_eadm_up{device="erdma_0"} 1']


def test_the_line_quoted_by_the_public_exporter_parses():
    lines = textfile.device_lines("erdma_0", QUOTE, "")
    assert lines["stat"] == ['erdma_stat_total{device="erdma_0",counter="listen_create_cnt"} 0']


def test_port_state_and_rate_come_from_ibv_devinfo_verbose():
    lines = textfile.device_lines("erdma_0", STAT, DEVINFO)
    assert lines["port_active"] == ['erdma_port_active{device="erdma_0",port="1"} 1']
    assert len(lines["port_gbps"]) == 1 and lines["port_gbps"][0].startswith(
        'erdma_port_link_gbps{device="erdma_0",port="1"} ')
    assert float(lines["port_gbps"][0].split()[-1]) > 0


def test_missing_eadm_is_said_not_hidden():
    lines = textfile.device_lines("erdma_0", None, None)
    assert lines["up"] == ['erdma_eadm_up{device="erdma_0"} 0']
    assert lines["stat"] == [] and lines["port_active"] == []


def test_main_writes_one_complete_file_atomically(tmp_path):
    out_dir = tmp_path / "textfile"
    out_dir.mkdir()
    out = out_dir / "erdma.prom"
    out.write_text("old content\n")
    eadm = standin(tmp_path, "eadm-standin", FIXTURES / "eadm" / "stat_reconstructed.txt")
    devinfo = standin(tmp_path, "ibv_devinfo-standin", FIXTURES / "ibv_devinfo" / "erdma_guide_verbose.txt")
    assert textfile.main(["--device", "erdma_0", "--out", str(out), "--eadm", eadm, "--ibv-devinfo", devinfo]) == 0
    text = out.read_text()
    assert "old content" not in text and text.endswith("\n")
    assert os.listdir(out_dir) == ["erdma.prom"], "a temporary file was left behind"
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    parsed = report.parse_prometheus(text)
    assert len(parsed["erdma_stat_total"]) == 44
    assert parsed["erdma_textfile_last_run_timestamp_seconds"][0][1] > 0
    assert "# TYPE erdma_stat_total counter" in text
    assert (tmp_path / "eadm-standin.args").read_text().split("\n")[0] == "stat -d erdma_0 -l"
    assert (tmp_path / "ibv_devinfo-standin.args").read_text().strip() == "-d erdma_0 -v"


def test_eadm_without_dash_l_gets_a_second_try(tmp_path):
    eadm = tmp_path / "old-eadm-standin"
    eadm.write_text(f"#!/bin/sh\ncase \"$*\" in *-l*) exit 1;; esac\ncat {FIXTURES / 'eadm' / 'stat_exporter_quote.txt'}\n")
    eadm.chmod(0o755)
    out = tmp_path / "erdma.prom"
    textfile.main(["--device", "erdma_0", "--out", str(out), "--eadm", str(eadm), "--ibv-devinfo", "/nonexistent"])
    text = out.read_text()
    assert 'erdma_stat_total{device="erdma_0",counter="listen_create_cnt"} 0' in text
    assert 'erdma_eadm_up{device="erdma_0"} 1' in text and "erdma_port_active" not in text


def test_label_values_are_escaped():
    assert textfile.label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_the_writer_runs_from_the_tree_the_role_installs_without_ansible(tmp_path):
    """The layout roles/pd_monitoring/tasks/erdma.yml installs (its own lists of packages and parsers), run by
    a python without site-packages: nothing but that tree may be needed (the lab found an import of the
    collection that only a checkout or an Ansible install satisfied)."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import shutil  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel
    tasks = {t["name"]: t for t in yaml.safe_load((ROLE / "tasks" / "erdma.yml").read_text())}
    packages = next(t for t in tasks.values() if "set_fact" in str(t))["ansible.builtin.set_fact"][
        "_pd_monitoring_packages"]
    parsers = next(t for n, t in tasks.items() if "parsers" in n and "loop" in t and "copy" in str(t))["loop"]
    lib = tmp_path / "lib"
    for package in packages:
        (lib / package).mkdir(parents=True)
        (lib / package / "__init__.py").write_text("")
    for name in parsers:
        shutil.copy(ROOT / "plugins" / "module_utils" / name, lib / packages[-1] / name)
    shutil.copy(TEXTFILE_FILE, lib / "erdma_textfile.py")
    eadm = standin(tmp_path, "eadm-standin", FIXTURES / "eadm" / "stat_reconstructed.txt")
    devinfo = standin(tmp_path, "ibv_devinfo-standin", FIXTURES / "ibv_devinfo" / "erdma_guide_verbose.txt")
    out = tmp_path / "erdma.prom"
    done = subprocess.run(["/usr/bin/python3", "-S", "-I", str(lib / "erdma_textfile.py"), "--device", "erdma_0",
                           "--out", str(out), "--eadm", eadm, "--ibv-devinfo", devinfo],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'erdma_eadm_up{device="erdma_0"} 1' in out.read_text()
