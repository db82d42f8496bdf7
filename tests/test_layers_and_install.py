"""The tree's layering, and `--user-dir fairseq_tp` after a non-editable install."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import fairseq

from conftest import REPO, run_cli


def test_diffusion_and_schedule_import_no_fairseq():
    code = ("import sys, fairseq_tp.diffusion, fairseq_tp.schedule; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'fairseq')))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_user_dir_resolves_beside_fairseq_after_pip_install(toy_data, checkpoints, tmp_path):
    # `pip install .` puts fairseq_tp beside fairseq in site-packages; fairseq then finds
    # `--user-dir fairseq_tp` from any directory.  Reproduce that layout in a scratch site dir.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(REPO)], check=True, capture_output=True)
    shutil.copytree(Path(fairseq.__file__).parent, site / "fairseq")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "fairseq_cli.generate", str(toy_data / "bin"), "--user-dir", "fairseq_tp",
               "--task", "diffusion_translation", "--path", str(checkpoints["absorbing"]),
               "--gen-subset", "test", "--cpu", "--tp-schedule", "uniform:2"]
    result = run_cli(command, cwd=elsewhere, env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert sum(line.startswith("H-") for line in result.stdout.splitlines()) == 20
    # The editable install of this checkout leaves nothing beside fairseq: there the bare name fails.
    editable = run_cli(command, cwd=elsewhere)
    assert editable.returncode != 0 and "FileNotFoundError" in editable.stderr
