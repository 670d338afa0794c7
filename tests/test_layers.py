"""The package's layering, read from the source (every import, those inside functions included):
no import cycle, the CLI above the library's API only, the settings a leaf. Static, so a lazy
import that closes a cycle fails here before it fails someone at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "robustcli"

#: what robustcli.cli may not import: everything below robustcli.api (issue 22)
BELOW_API = ("tracking", "analyses", "execution", "training", "selection", "robustness", "testing")


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:``: never run, so never a cycle."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for sub in node.body for n in ast.walk(sub))
    return skip


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file, each with the packages
    above it (importing ``a.b.c`` runs ``a/b/__init__.py`` too), its own packages left out."""
    top = name.split(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:
                found.add(f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module)
    out = set()
    for module in found:
        parts = module.split(".")
        if parts[0] != top:
            continue
        out.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return {m for m in out if m in modules and m != name and not name.startswith(m + ".")}


def import_cycles(root: Path) -> list[list[str]]:
    """Every import cycle among the modules under ``root`` (strongly connected sets, Tarjan)."""
    modules = _modules(root)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                cycles.append(sorted(members))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _describe(cycles: list[list[str]], root: Path) -> str:
    modules = _modules(root)
    lines = []
    for members in cycles:
        lines.append(" <-> ".join(members))
        for m in members:
            lines.append(f"    {m} imports {sorted(imports_of(m, modules[m], modules) & set(members))}")
    return "\n".join(lines)


def test_no_import_cycle_in_the_package():
    cycles = import_cycles(ROOT)
    assert not cycles, "import cycles (lazy imports included):\n" + _describe(cycles, ROOT)


def test_the_cycle_finder_sees_a_cycle_closed_by_a_lazy_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "c.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from pkg import d\nfrom .a import x\n")
    (pkg / "d.py").write_text("from pkg.c import y\n")  # c -> d only under TYPE_CHECKING: no cycle
    assert import_cycles(pkg) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


@pytest.mark.parametrize("path", sorted((ROOT / "cli").glob("*.py")), ids=lambda p: p.name)
def test_the_cli_imports_nothing_below_the_api(path):
    modules = _modules(ROOT)
    name = "robustcli.cli." + path.stem if path.stem != "__init__" else "robustcli.cli"
    below = sorted(m for m in imports_of(name, path, modules) if m.split(".")[1] in BELOW_API)
    assert not below, f"{path.name} imports {below}: reach them through robustcli.api"


def test_the_settings_are_a_leaf():
    """config.py (the settings) and the parsers and option names it reads import no study, rule or
    executor: only the error and the wording of an option."""
    modules = _modules(ROOT)
    leaf = {"robustcli.config", "robustcli.parsing", "robustcli.option_names", "robustcli.errors", "robustcli.wording"}
    for name in ("robustcli.config", "robustcli.parsing", "robustcli.option_names"):
        assert imports_of(name, modules[name], modules) <= leaf, name


def test_an_abstract_task_class_is_refused_naming_what_it_lacks(tmp_path, monkeypatch):
    """A plugin class missing abstract methods is refused when loaded, in one line (exit 2), not
    built and reported as bad [task_options]."""
    from typer.testing import CliRunner

    from robustcli.cli.main import app

    site = tmp_path / "site"
    dist = site / "robust_t_abstract-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: robust-t-abstract\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[robustcli.tasks]\nhalf-done = robust_t_abstract:HalfDone\n")
    (site / "robust_t_abstract.py").write_text(
        "from robustcli.task import Task, Loss\n"
        "class HalfDone(Task):\n"
        "    name = 'half-done'\n"
        "    description = 'no model, no data'\n"
        "    loss = Loss('mse', 'mean((y - f(x))^2)')\n"
    )
    monkeypatch.syspath_prepend(str(site))
    result = CliRunner().invoke(app, ["tasks", "show", "half-done"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: plugin 'half-done' (robust_t_abstract:HalfDone) does not implement ")
    assert "build_model" in lines[0] and "Can't instantiate" not in lines[0]
