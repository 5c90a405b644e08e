"""The rendered_file module through AnsibleModule (shared in-process runner): its argument spec, the secret
kept out of the result and the invocation, diff only when asked."""
from ansible_collections.erdma.pd.plugins.modules import rendered_file


def test_a_secret_stays_out_of_the_result_and_the_invocation(run_module, tmp_path):
    target = tmp_path / "x.env"
    out = run_module(rendered_file, dict(path=str(target), secret_content="KEY=hunter2\n", mode="0600",
                                         _ansible_diff=True))
    assert not out.failed and out.result["changed"]
    assert "hunter2" not in repr(out.result)
    assert target.read_text() == "KEY=hunter2\n"


def test_content_and_secret_content_are_exclusive(run_module, tmp_path):
    out = run_module(rendered_file, dict(path=str(tmp_path / "x"), content="a", secret_content="b", mode="0600"))
    assert out.failed and "mutually exclusive" in out.result["msg"]
    assert not (tmp_path / "x").exists()


def test_no_diff_unless_asked_and_a_clear_error(run_module, tmp_path):
    out = run_module(rendered_file, dict(path=str(tmp_path / "x"), content="a\n", mode="0644"))
    assert out.result["changes"] == ["create"] and "diff" not in out.result
    out = run_module(rendered_file, dict(path=str(tmp_path / "x"), content="a\n", mode="0644", owner="nobody-erdma"))
    assert out.failed and "owner 'nobody-erdma' does not exist" in out.result["msg"]
