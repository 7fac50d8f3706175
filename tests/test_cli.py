"""The `rdro` entry point: help, unknown commands, dispatch."""

import subprocess
import sys

from rdro import cli


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_unknown_command_explains_itself(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "verify" in err


def test_unavailable_command_explains_itself(monkeypatch, capsys):
    monkeypatch.setitem(cli.SUBCOMMANDS, "later", ("rdro.not_written_yet", "future work", None))
    assert cli.main(["later"]) == 2
    assert "not available" in capsys.readouterr().err


def test_missing_extra_names_the_extra(monkeypatch, capsys, tmp_path):
    mod = tmp_path / "rdro_fake_cmd.py"
    mod.write_text("import transformers_not_installed_xyz\n")
    # not monkeypatch.syspath_prepend: it calls pkg_resources, which an evaluation test's import may have stubbed
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.setitem(cli.EXTRA_OF_MODULE, "transformers_not_installed_xyz", "llm")
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", ("rdro_fake_cmd", "fake", "llm"))
    assert cli.main(["fake"]) == 2
    assert "rdro[llm]" in capsys.readouterr().err


def test_console_script_version():
    out = subprocess.run([sys.executable, "-m", "rdro.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("rdro ")
