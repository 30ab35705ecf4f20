"""The import-layer contract: imports point downward only, as the layer table of DESIGN.md says.

Every ``import`` in ``src/saescope`` counts, including ones inside functions (a lazy import is
still knowledge of that layer) and ``TYPE_CHECKING`` blocks. Change the table here only together
with the table in /work/shared/DESIGN.md ("Layers (imports point downward only)").
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import saescope

SRC = Path(__file__).parents[1] / "src" / "saescope"

HELPERS = {"", "errors", "_files", "_finite", "_progress", "_dist", "_home", "_plotting", "_sites"}
"""The shared leaf below all layers ("" is the package's own ``__init__``); imports only itself."""
LEAVES = {"cli", "serve", "quickstart", "walkthrough", "steps", "__main__"}
"""May import anything; nothing but another leaf imports them (quickstart and walkthrough are the
CLI's one-command recipes, steps the reuse-or-run steps they share)."""

MAY_IMPORT: dict[str, set[str]] = {
    "sae": set(),
    "coding": {"sae"},
    "models": set(),
    "data": set(),
    "activations": {"models", "data"},
    "train": {"sae"},
    "evaluate": {"sae", "coding", "models", "data", "activations"},
    "interpret": {"sae", "coding", "models", "data", "activations", "evaluate"},
    "steer": {"sae", "coding", "models", "data", "activations", "evaluate", "interpret"},
    "jobs": {"sae", "coding", "models", "data", "activations", "train", "evaluate"},
    "toy": {"sae", "coding", "train"},
}
"""Layers each layer may import besides itself and the helpers."""
MUST_NOT_KNOW = {
    "sae": "models, data, training",
    "coding": "models, data, training",
    "models": "SAEs, training",
    "data": "models beyond the tokenizer",
    "activations": "SAE internals",
    "train": "where batches come from (takes an iterator of tensors)",
    "evaluate": "training",
    "interpret": "the web server",
    "steer": "the web server",
    "jobs": "the CLI and the web server",
    "toy": "language models",
}
"""DESIGN.md's "must not know about" column, quoted in failures."""


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    layer: str
    target: str

    def __str__(self) -> str:
        layer = self.layer or "saescope/__init__"
        if self.layer in HELPERS:
            rule = "the shared helpers sit below every layer and import only each other"
        elif self.target.split(".")[1:2] and self.target.split(".")[1] in LEAVES:
            rule = f"{self.target} is a leaf: nothing imports it"
        elif self.layer not in MAY_IMPORT:
            rule = "this package is not in the layer table; add it (and to DESIGN.md)"
        else:
            allowed = ", ".join(sorted(MAY_IMPORT[self.layer])) or "nothing"
            rule = (
                f"{layer}/ may import only the helpers and {allowed}; it must not know about "
                f"{MUST_NOT_KNOW[self.layer]}"
            )
        return f"{self.path}:{self.line}: {layer} imports {self.target}: {rule} (DESIGN.md)"


def _unit(module: str) -> str:
    """``saescope.models.hooks`` -> ``models``; ``saescope`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [root.name, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, root: Path):
    """The saescope modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == root.name]
    base = node.module or ""
    if node.level:  # relative: resolve against this module's package
        package = module.split(".")
        package = package if is_package else package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([base] if base else [])])
    if base.split(".")[0] != root.name:
        return []
    if base != root.name:
        return [base]
    api: dict[str, str] = getattr(saescope, "_API", {})  # the package's lazy re-exports
    out = []
    for alias in node.names:
        if (root / alias.name).is_dir() or (root / f"{alias.name}.py").is_file():
            out.append(f"{root.name}.{alias.name}")
        else:
            out.append(api.get(alias.name, root.name))
    return out


def _allowed(layer: str, target: str) -> bool:
    unit = _unit(target)
    if unit == layer or layer in LEAVES:
        return True
    if layer in HELPERS:
        return unit in HELPERS
    return unit in HELPERS or unit in MAY_IMPORT.get(layer, set())


def layer_violations(root: Path) -> list[Violation]:
    """Every import under ``root`` (a package directory) that breaks the table."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        layer = _unit(module)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(node, module, path.name == "__init__.py", root):
                if not _allowed(layer, target):
                    rel = path.relative_to(root.parent)
                    found.append(Violation(str(rel), node.lineno, layer, target))
    return found


def test_imports_point_downward_only() -> None:
    violations = layer_violations(SRC)
    assert not violations, "imports against the layer table:\n" + "\n".join(map(str, violations))


def test_the_table_names_every_package() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    unplaced = (packages | modules) - set(MAY_IMPORT) - HELPERS - LEAVES
    assert not unplaced, f"not in the layer table (tests/test_layers.py, DESIGN.md): {unplaced}"


def test_the_check_finds_lazy_relative_and_package_level_imports(tmp_path: Path) -> None:
    root = tmp_path / "saescope"
    (root / "train").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "__init__.py").write_text("")
    (root / "models" / "__init__.py").write_text("")
    (root / "train" / "__init__.py").write_text("from saescope import load_model\n")
    (root / "train" / "fit.py").write_text(
        "from saescope.sae import SAE\n"
        "\n"
        "def fit():\n"
        "    from ..models import hooks\n"
        "    import saescope.cli\n"
    )
    found = sorted((v.path, v.line, v.target) for v in layer_violations(root))
    assert found == [
        ("saescope/train/__init__.py", 1, "saescope.models"),  # through saescope.__getattr__
        ("saescope/train/fit.py", 4, "saescope.models"),
        ("saescope/train/fit.py", 5, "saescope.cli"),
    ]
    message = str(next(v for v in layer_violations(root) if v.line == 4))
    assert "saescope/train/fit.py:4: train imports saescope.models" in message
    assert "where batches come from" in message


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("saescope.train", ("models", "data", "activations", "evaluate", "interpret", "steer")),
        ("saescope.sae", ("models", "data", "activations", "train", "evaluate", "interpret")),
    ],
)
def test_importing_a_layer_loads_nothing_above_it(package: str, forbidden: tuple) -> None:
    code = f"import sys, {package}; print(' '.join(m for m in sys.modules if m.startswith('saescope')))"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC.parent), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    loaded = sorted(m for m in out if _unit(m) in forbidden)
    assert not loaded, f"import {package} loaded {loaded}"
