"""The package's module-level import graph has no cycle, and the floors import downwards only: nothing below
the top floors (`posebench.run`, the orchestration, and `posebench.cli`) imports them or reposedm; the reference
model is wired in at the top only (train-reference, sample, the demo, the gate's checkpoints)."""

from __future__ import annotations

import ast
from pathlib import Path

import posebench

PACKAGE = Path(posebench.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _top_level_imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Modules imported when `module` is imported: top-level statements (and their if/try blocks), not function
    bodies and not `if TYPE_CHECKING:` blocks."""
    out: set[str] = set()
    base = module if is_package else module.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = base
                    for _ in range(node.level - 1):
                        parent = parent.rpartition(".")[0]
                    target = f"{parent}.{node.module}" if node.module else parent
                else:
                    target = node.module or ""
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import submodule`
    visit(tree.body)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imports = _top_level_imports(ast.parse(path.read_text()), name, path.name == "__init__.py")
        graph[name] = {m for m in imports if m in modules and m != name}
    return graph


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_floors_import_downwards():
    """Also function-level imports: the top floors are imported only by themselves and the API (`posebench`)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    offenders = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            top = name.startswith(("posebench.run", "posebench.cli")) or name in ("posebench", "posebench.__main__")
            for target in targets:
                if target.startswith(("reposedm", "posebench.run", "posebench.cli")) and not top:
                    offenders.append(f"{name} imports {target}")
    assert not offenders, offenders
