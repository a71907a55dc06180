"""The layout rules of docs/architecture.md, measured: import cycles between the project's modules, modules of
`modeling/` over 500 lines and functions of `modeling/` over 80 lines. Prints one line per problem, nothing when
there are none. Usage: python tests/layout_rules.py [PROJECT_ROOT]

Vendored from the team's layout report so that every clone enforces it (tests/test_layout.py).
"""

import ast
import sys
from pathlib import Path


MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name → file of every module under modeling/ and every top-level script."""
    modules = {}
    for path in sorted(root.joinpath("modeling").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    for script in root.glob("*.py"):
        modules[script.stem] = script
    return modules


def imported_modules(name: str, path: Path, tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (relative imports resolved; `from pkg import sub` counts as pkg.sub)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}" if target else alias.name
                found.add(submodule if submodule in modules else target)
    return found


def size_problems(name: str, path: Path, tree: ast.AST, root: Path) -> list[str]:
    if not name.startswith("modeling"):
        return []
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                problems.append(
                    f"function over {MAX_FUNCTION_LINES} lines: {path.relative_to(root)}:{node.name} ({length})"
                )
    if path.read_text().count("\n") >= MAX_MODULE_LINES:
        problems.append(f"module over {MAX_MODULE_LINES} lines: {path.relative_to(root)}")
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return cycles


def layout_problems(root: Path) -> list[str]:
    modules = project_modules(root)
    faces = {name for name, path in modules.items() if path.name == "__init__.py"}
    graph, problems = {}, []
    for name, path in modules.items():
        try:
            tree = ast.parse(path.read_text())
        except SyntaxError:
            continue
        problems += size_problems(name, path, tree, root)
        if name not in faces:  # a package face re-exports its modules: not an edge of the data flow
            graph[name] = {m for m in imported_modules(name, path, tree, modules) if m not in faces and m != name}
    problems += ["import cycle: " + " <-> ".join(cycle) for cycle in import_cycles(graph)]
    return problems


if __name__ == "__main__":
    print("\n".join(layout_problems(Path(sys.argv[1] if len(sys.argv) > 1 else "."))))
