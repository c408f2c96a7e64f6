"""The installed package is the library only; the demo runs from a checkout (examples/) with an installed trl-bots."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_a_built_wheel_holds_the_library_and_the_checkout_runs_the_demo_with_it(tmp_path):
    # Build from a copy of the checkout's files (setuptools writes build/ and *.egg-info next to the sources).
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout.splitlines()
    source = tmp_path / "source"
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source])
    (wheel,) = (tmp_path / "dist").glob("trl_bots-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"trl_bots", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "trl_bots/trainer.py" in names and "trl_bots/checkpoints.py" in names
    demo = [name for name in names if re.search(r"bots_demo|offline|arithmetic|examples|\.jsonl$", name)]
    assert demo == []  # no demo code, no shipped setup

    # A fresh environment that takes torch, trl & co. from this Python, and trl-bots from the wheel only.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv])
    python = str(venv / "bin" / "python")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], env=env)
    # This Python's trl-bots is an editable install (a finder appended last to sys.meta_path): the venv's copy wins.
    where = run([python, "-c", "import trl_bots; print(trl_bots.__file__)"], env=env, cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(venv), where

    script = str(ROOT / "examples" / "train_bots.py")
    help_text = run([python, script, "--help"], env=env, cwd=tmp_path).stdout
    assert "--bots_strategy" in help_text and "--demo_check_only" in help_text
    check = run([python, script, "--demo_check_only", "--output_dir", tmp_path / "out"], env=env, cwd=tmp_path)
    found = re.search(
        r"meets the start criterion on the pool of 1000 tasks: always ([\d.]+) / mixed ([\d.]+) / never ([\d.]+)",
        check.stdout,
    )
    assert found, check.stdout[-3000:]
    always, mixed, never = map(float, found.groups())
    assert always >= 0.25 and never >= 0.25 and mixed <= 0.45 and abs(always + mixed + never - 1) < 2e-3
    assert str(ROOT / "examples" / "offline_setup") in check.stdout  # the shipped setup, found beside bots_demo
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("checkpoint-*"))  # nothing trained
