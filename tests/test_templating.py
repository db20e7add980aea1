"""Templates ship inside the wheel: a non-editable install must find them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from gateway.templating import builtin_templates_dir, fold, make_environment, pretty

ROOT = Path(__file__).resolve().parent.parent


def test_builtin_templates_are_found() -> None:
    base = builtin_templates_dir()
    for name in (
        "email/approval.txt",
        "email/approval.html",
        "email/question.txt",
        "email/question.html",
        "pages/request.html",
        "pages/message.html",
        "dev/mailbox.html",
    ):
        assert (base / name).is_file(), name


def test_wheel_contains_the_templates_and_finds_them(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("gateway-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "gateway/_templates/email/approval.html" in names
        assert "gateway/_templates/pages/request.html" in names
        assert "gateway/migrations/versions/0001_initial_schema.py" in names
        zf.extractall(tmp_path / "site")
    found = subprocess.run(
        [sys.executable, "-c", "import gateway.templating as t; print(t.builtin_templates_dir())"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == str(tmp_path / "site" / "gateway" / "_templates")


def test_html_is_autoescaped_and_text_is_not() -> None:
    env = make_environment()
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert env.get_template("email/approval.txt").environment.autoescape("email/approval.txt") is False
    assert env.get_template("email/approval.html").environment.autoescape("email/approval.html") is True


def test_pretty_and_fold() -> None:
    assert pretty("text") == "text"
    assert pretty({"b": 1, "a": [1]}) == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'
    assert fold("x" * 10, 20) == "x" * 10
    assert fold("x" * 30, 20).endswith("(10 more characters)")
