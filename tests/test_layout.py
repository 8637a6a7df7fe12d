"""The package by concern (../shared/STYLE.md, issue 25): the library's import graph has no cycle, never reaches
streamlit or the app, and keeps its folders and modules small enough to read."""

import ast
import subprocess
import sys
from pathlib import Path

from support import ROOT

PACKAGE = ROOT / "charrnn"
MAX_MODULES = 13  # a folder's modules besides __init__ and __main__ ("about 12")
MAX_LINES = 320  # a module's lines ("about 300")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_only(tree) -> set[int]:
    """The ids of the nodes under `if TYPE_CHECKING:`: names for annotations, never imported at run time."""
    blocks = [n for n in ast.walk(tree) if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"]
    return {id(inner) for block in blocks for stmt in block.body for inner in ast.walk(stmt)}


def imports() -> dict[str, set[str]]:
    """Each charrnn module -> the charrnn modules it imports at run time (at the top or inside a function)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    graph = {}
    for name, path in modules.items():
        found, tree = set(), ast.parse(path.read_text())
        skipped = type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
                found |= {n for n in names if n in modules} or ({node.module} & modules.keys())
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names} & modules.keys()
        graph[name] = found - {name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph (its modules in order), or []."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_import_graph_has_no_cycle():
    graph = imports()
    assert len(graph) > 40 and graph["charrnn.cli.commands"]  # the graph was read
    assert cycle(graph) == []


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_library_never_imports_the_app():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in ("streamlit", "ui", "pages")], path


def test_folders_and_modules_stay_small():
    for folder in [PACKAGE, *(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())]:
        modules = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
        assert len(modules) <= MAX_MODULES, (folder, len(modules))
    for path in PACKAGE.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= MAX_LINES, path


def test_importing_the_library_loads_torch_alone():
    """A GPU check or a notebook imports the models and training without the app or the run store's database."""
    code = "import sys, charrnn, charrnn.models, charrnn.train, charrnn.generate; print(sorted(m for m in "
    code += "('streamlit', 'sqlalchemy', 'alembic', 'optuna') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
