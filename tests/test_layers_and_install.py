"""The tree's layering, and `--user-dir fairseq_tp` after a non-editable install."""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fairseq

from conftest import REPO, run_cli


# What each layer may import, by top-level folder of fairseq_tp (the rest of the package may import them).
FORBIDDEN = {
    "diffusion": {"fairseq", "fairseq_glue", "fairseq_search", "search"},
    "schedules": {"fairseq", "fairseq_glue", "fairseq_search", "search", "diffusion"},
    "search": {"fairseq", "fairseq_glue", "fairseq_search", "diffusion"},
    "fairseq_glue": {"fairseq_search", "search"},
}


def imported_layers(source: Path, code: str = None):
    """(name, what it names) for every import in a module: 'fairseq', or a fairseq_tp folder."""
    package = source.relative_to(REPO).parts[:-1]
    for node in ast.walk(ast.parse(source.read_text() if code is None else code)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(package[:len(package) - node.level + 1])
                modules = [".".join(base + ([node.module] if node.module else []))]
            else:
                modules = [node.module or ""]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "fairseq":
                yield module, "fairseq"
            elif parts[0] == "fairseq_tp" and len(parts) > 1:
                yield module, parts[1]


def test_each_layer_imports_only_what_is_below_it():
    for layer, forbidden in FORBIDDEN.items():
        sources = sorted((REPO / "fairseq_tp" / layer).rglob("*.py"))
        assert sources, layer
        for source in sources:
            for module, target in imported_layers(source):
                assert target not in forbidden, f"{source.relative_to(REPO)} imports {module}"


def test_the_layer_check_sees_relative_and_absolute_imports():
    module = REPO / "fairseq_tp" / "diffusion" / "x.py"
    seen = {code: [target for _, target in imported_layers(module, code)]
            for code in ("from ..search import run_search", "import fairseq.models", "from . import base")}
    assert seen == {"from ..search import run_search": ["search"], "import fairseq.models": ["fairseq"],
                    "from . import base": ["diffusion"]}


def test_the_pure_layers_import_no_fairseq_and_the_search_no_botorch_until_used():
    heavy = ("fairseq", "botorch", "gpytorch", "matplotlib")
    code = ("import json, sys, fairseq_tp.diffusion, fairseq_tp.schedules, fairseq_tp.search; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))); "
            "fairseq_tp.search.BoTorchProposer; print(json.dumps('botorch' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert [json.loads(line) for line in out.stdout.splitlines()] == [[], True]


def test_user_dir_resolves_beside_fairseq_after_pip_install(toy_data, checkpoints, tmp_path):
    # `pip install .` puts fairseq_tp beside fairseq in site-packages; fairseq then finds
    # `--user-dir fairseq_tp` from any directory.  Reproduce that layout in a scratch site dir.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(REPO)], check=True, capture_output=True)
    # fairseq's files as links in real folders: fairseq looks beside its own folder, unresolved
    shutil.copytree(Path(fairseq.__file__).parent, site / "fairseq", copy_function=os.symlink)
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
