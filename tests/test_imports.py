"""Imports flow one way (issue 12, STYLE.md 11): app → ui → n2n; benchmarks → n2n. No cycles, no
private names reached across modules, no sys.path edits; every package imported is declared in the
requirements. Read from the source with `ast`, lazy imports inside functions included."""
from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from helpers import declared, normalise

ROOT = Path(__file__).resolve().parents[1]


def modules() -> dict[str, Path]:
    files = [ROOT / "app.py", ROOT / "train_space.py", *ROOT.glob("ui/*.py"), *ROOT.glob("n2n/*.py"),
             *ROOT.glob("benchmarks/*.py")]
    names = {}
    for path in files:
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(name: str, path: Path, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """The project modules `name` imports, and the private names it reaches in them (module._name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found, private, aliases = set(), set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
                aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in known:  # a module: `from n2n import hub`
                    found.add(f"{base}.{alias.name}")
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
                else:
                    found.add(base)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):  # __version__ is public
                        private.add(f"{base}.{alias.name}")
    for node in ast.walk(tree):  # hub._atomic, where hub is a project module
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                and not node.attr.startswith("__") and aliases.get(node.value.id) in known):
            private.add(f"{aliases[node.value.id]}.{node.attr}")
    return {m for m in found if m in known and m != name}, {p for p in private if p.rpartition(".")[0] != name}


def graph() -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    known = modules()
    edges, private = {}, set()
    for name, path in known.items():
        edges[name], reached = imports(name, path, known)
        private |= {(name, p) for p in reached}
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each once, as the modules on it)."""
    found, done = [], set()

    def walk(node, stack):
        for nxt in sorted(edges[node]):
            if nxt in stack:
                cycle = stack[stack.index(nxt):]
                if set(cycle) not in [set(c) for c in found]:
                    found.append(cycle)
            elif nxt not in done:
                walk(nxt, stack + [nxt])
        done.add(node)

    for node in sorted(edges):
        walk(node, [node])
    return found


def test_no_import_cycles():
    edges, _ = graph()
    assert edges["app"] and edges["ui.finetune"], "the walk found the app's imports"
    assert [" → ".join(c + c[:1]) for c in cycles(edges)] == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_flow_one_way():
    """n2n imports neither the app, ui nor benchmarks; ui imports neither the app nor benchmarks."""
    edges, _ = graph()
    for name, targets in edges.items():
        if name.startswith("n2n"):
            assert not [t for t in targets if not t.startswith("n2n")], name
        if name.startswith("ui"):
            assert not [t for t in targets if t == "app" or t.startswith("benchmarks")], name


def test_no_private_names_across_modules():
    _, private = graph()
    assert private == set()


def test_the_tests_reach_no_private_names_of_the_code():
    """Tests use what a caller could: no module._name, no `from module import _name`, no monkeypatching one."""
    known = modules()
    reached = set()
    for path in ROOT.glob("tests/*.py"):
        reached |= {(path.name, p) for p in imports(path.stem, path, known)[1] if p.rpartition(".")[0] in known}
        reached |= {(path.name, m) for m in re.findall(r"setattr\(\w+, \"(_[a-zA-Z]\w*)\"", path.read_text())}
    assert reached == set()


def test_no_sys_path_edits_in_the_package_the_app_or_the_tests():
    """The tests find app.py, ui/ and their helpers through pyproject's pytest `pythonpath`."""
    tests = [p for p in ROOT.glob("tests/*.py") if p.name != "test_imports.py"]  # this file names it
    for path in [ROOT / "app.py", *ROOT.glob("ui/*.py"), *ROOT.glob("n2n/*.py"), *tests]:
        assert "sys.path" not in path.read_text(), path


OPTIONAL = {"spaces": "ZeroGPU Spaces only; ui/common falls back without it",
            "bm3d": "an optional baseline (non-commercial licence)",
            "onnxruntime": "n2n export only: pyproject's extra `onnx` (test_export checks it) and requirements-dev.txt"}


def third_party(paths: list[Path]) -> set[str]:
    """Top-level modules imported (absolute imports, lazy ones included) that are neither the standard
    library nor this repository's own."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                found.add(node.module.split(".")[0])
    own = {p.stem for p in [*ROOT.glob("*.py"), *ROOT.glob("tests/*.py")]}
    own |= {p.name for p in ROOT.iterdir() if p.is_dir()}
    return {m for m in found if m not in sys.stdlib_module_names and m not in own}


def undeclared(modules: set[str], requirements: Path) -> set[str]:
    names, dists = declared(requirements), packages_distributions()
    return {m for m in modules - OPTIONAL.keys() if not {normalise(d) for d in dists.get(m, [m])} & names}


def test_every_imported_package_is_declared():
    """What the app, the CLI and training import is in requirements.txt (which pyproject.toml reads);
    what the tests and benchmarks add is in requirements-dev.txt. Nothing arrives only by way of another package."""
    runtime = third_party([ROOT / "app.py", ROOT / "train_space.py", *ROOT.glob("ui/*.py"), *ROOT.glob("n2n/*.py")])
    assert {"torch", "gradio", "huggingface_hub", "cv2", "PIL"} <= runtime, runtime
    assert undeclared(runtime, ROOT / "requirements.txt") == set()
    development = third_party([*ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")])
    assert undeclared(development, ROOT / "requirements-dev.txt") == set()
