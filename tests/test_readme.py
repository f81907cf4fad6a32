"""The README's commands and example are what CI and users run: keep them honest."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def block_after(marker):
    match = re.search(re.escape(marker) + r"\n```\w*\n(.*?)```", README, re.S)
    assert match, f"README.md has no code block after {marker}"
    return match.group(1)


def test_exactly_two_setup_commands_main_job_and_tests():
    main = block_after("<!-- main-command -->").strip()
    tests = block_after("<!-- test-command -->").strip()
    assert main.endswith("python train.py") and "pip install" in main
    assert "pytest" in tests and "pip install" in tests
    assert main.count("\n") == 0 and tests.count("\n") == 0


def test_ci_runs_the_readme_test_command():
    assert "<!-- test-command -->" in (REPO / ".ci" / "run").read_text()


def test_model_fit_example_runs(capsys):
    exec(compile(block_after("<!-- example: model-fit -->"), "README example", "exec"), {})
    assert "recall_at_1" in capsys.readouterr().out
