"""module_utils/rendered_file.py on real files (tmp_path): written only when content, mode or owner differ,
atomically with its final mode, secrets never in a diff, bad requests refused before anything is written."""
import os
import stat

import pytest

from ansible_collections.erdma.pd.plugins.module_utils import rendered_file as rf


def params(target, **over):
    base = dict(path=str(target), content="a=1\n", secret_content=None, mode="0644", owner="root", group="root",
                parent_mode=None)
    base.update(over)
    return base


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_is_created_then_left_alone(tmp_path):
    target = tmp_path / "unit.service"
    first = rf.apply(params(target), check_mode=False)
    assert first["changed"] and first["changes"] == ["create"]
    assert target.read_text() == "a=1\n" and mode_of(target) == 0o644
    assert first["diff"]["before"] == "" and first["diff"]["after"] == "a=1\n"
    again = rf.apply(params(target), check_mode=False)
    assert not again["changed"] and again["changes"] == [] and "diff" not in again


def test_check_mode_reports_without_writing(tmp_path):
    target = tmp_path / "unit.service"
    target.write_text("old\n")
    result = rf.apply(params(target), check_mode=True)
    assert result["changed"] and result["changes"] == ["content"]
    assert result["diff"]["before"] == "old\n" and result["diff"]["after"] == "a=1\n"
    assert target.read_text() == "old\n"
    assert rf.apply(params(tmp_path / "new"), check_mode=True)["changes"] == ["create"]
    assert not (tmp_path / "new").exists()


def test_a_mode_change_keeps_the_content_and_the_inode(tmp_path):
    target = tmp_path / "x.env"
    target.write_text("a=1\n")
    os.chmod(target, 0o644)
    inode = os.stat(target).st_ino
    result = rf.apply(params(target, mode="0600"), check_mode=False)
    assert result["changes"] == ["mode"] and mode_of(target) == 0o600 and os.stat(target).st_ino == inode


def test_a_content_change_replaces_the_file_whole(tmp_path):
    target = tmp_path / "x.env"
    target.write_text("a=0\n")
    inode = os.stat(target).st_ino
    rf.apply(params(target, mode="0600"), check_mode=False)
    assert target.read_text() == "a=1\n" and mode_of(target) == 0o600
    assert os.stat(target).st_ino != inode  # renamed over, never written in place
    assert [p.name for p in tmp_path.iterdir()] == ["x.env"]  # no temporary file left behind


def test_a_secret_never_reaches_the_diff(tmp_path):
    target = tmp_path / "proxy.env"
    result = rf.apply(params(target, content=None, secret_content="KEY=hunter2\n", mode="0600"), check_mode=False)
    assert "hunter2" not in repr(result)
    assert result["diff"]["after"] == rf.SECRET_MARK
    assert target.read_text() == "KEY=hunter2\n" and mode_of(target) == 0o600


def test_the_parent_is_created_only_when_asked(tmp_path):
    target = tmp_path / "etc" / "erdma-pd" / "a.env"
    with pytest.raises(rf.FileError, match="does not exist"):
        rf.apply(params(target), check_mode=False)
    result = rf.apply(params(target, parent_mode="0755"), check_mode=False)
    assert result["changes"] == ["create"] and mode_of(target.parent) == 0o755


@pytest.mark.parametrize("over, message", [
    (dict(mode="rw-r--r--"), "not an octal mode"),
    (dict(mode="0988"), "not an octal mode"),
    (dict(owner="no-such-user-erdma"), "owner"),
    (dict(group="no-such-group-erdma"), "group"),
    (dict(path="relative/unit.service"), "absolute"),
])
def test_bad_requests_are_refused_before_anything_is_written(tmp_path, over, message):
    with pytest.raises(rf.FileError, match=message):
        rf.apply(params(tmp_path / "unit.service", **over), check_mode=False)
    assert list(tmp_path.iterdir()) == []


def test_something_that_is_not_a_regular_file_is_never_replaced(tmp_path):
    (tmp_path / "real").write_text("keep\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(rf.FileError, match="not a regular file"):
        rf.apply(params(tmp_path / "link"), check_mode=False)
    assert (tmp_path / "real").read_text() == "keep\n"


def run_for_real(command):
    import shlex
    import subprocess
    proc = subprocess.run(shlex.split(command), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_validate_refuses_bad_content_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "config.json"
    target.write_text('{"ok": true}\n')
    check = "python3 -c 'import json,sys; json.load(open(sys.argv[1]))' %s"
    with pytest.raises(rf.FileError, match="refused the new content"):
        rf.apply(params(target, content="{not json", validate=check), check_mode=False, run=run_for_real)
    assert target.read_text() == '{"ok": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    result = rf.apply(params(target, content='{"ok": 1}\n', validate=check), check_mode=False, run=run_for_real)
    assert result["changes"] == ["content"] and target.read_text() == '{"ok": 1}\n'


def test_validate_needs_the_file_placeholder(tmp_path):
    with pytest.raises(rf.FileError, match="must contain %s"):
        rf.apply(params(tmp_path / "x", validate="true"), check_mode=False, run=run_for_real)
