"""The layout shows the pipeline: every module belongs to a stage, imports only its own or earlier
stages, project imports sit at module top, and there are no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREES = {
    "neurocxr": "neurocxr",
    "exporters": "neurocxr.exporters",
    "hardware_sims": "neurocxr.hardware_sims",
}
# The pipeline's order; a module may import its own stage and the ones before it.
STAGES = [
    "infra",
    "data",
    "models",
    "exporters",
    "hardware_sims",
    "energy",
    "training",
    "deploy",
    "evaluation",
    "report",
    "sweep",
    "app",
]
INFRA = {"errors", "fileio", "provenance", "validation", "threads", "interrupts", "metrics"}
# Imports that stay inside functions, each for a stated reason.
LAZY_ALLOWED = {
    "neurocxr": "`import neurocxr` stays light: the API is imported on first use",
    "neurocxr.cli": "each command imports its machinery when it runs, so `neurocxr --help` starts fast",
    "neurocxr.models.base": "the registry fills on first lookup from the package, which imports base",
}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in TREES.items():
        for path in (REPO / folder).rglob("*.py"):
            if "__pycache__" in path.parts or "_ray_shims" in path.parts:
                continue
            parts = [*package.split("."), *path.relative_to(REPO / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _stage(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("api", "cli"):
        return "app"
    if parts[1] in INFRA:
        return "infra"
    assert parts[1] in STAGES, (
        f"{module} belongs to no stage: put it in a stage folder or list it in INFRA"
    )
    return parts[1]


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import of the project."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, bool]] = []

    def target(name: str) -> str | None:
        while name and name not in MODULES:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            func = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            guard = type_only or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = (
                        module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                    )
                    base = base[: len(base) - child.level + 1]
                    names = [".".join(base + ([child.module] if child.module else []))]
                else:
                    names = [child.module or ""]
                subs = [
                    f"{names[0]}.{a.name}" for a in child.names if f"{names[0]}.{a.name}" in MODULES
                ]
                if subs and len(subs) == len(child.names) and module.startswith(names[0] + "."):
                    names = []  # `from pkg import sub` inside pkg: the package is already loading
                names += subs
            for name in names:
                t = target(name) if name.startswith("neurocxr") else None
                if t and t != module and not guard:
                    found.append((t, child.lineno, in_function))
            visit(child, func, guard)

    visit(tree, False, False)
    return found


def test_no_module_imports_a_later_stage() -> None:
    backward = [
        f"{m}:{line} ({_stage(m)}) imports {t} ({_stage(t)})"
        for m, p in MODULES.items()
        for t, line, _ in _imports(m, p)
        if STAGES.index(_stage(t)) > STAGES.index(_stage(m)) and t != "neurocxr"
    ]
    assert not backward, "\n".join(backward)


def test_project_imports_sit_at_module_top() -> None:
    inside = [
        f"{m}:{line} imports {t} inside a function"
        for m, p in MODULES.items()
        for t, line, in_function in _imports(m, p)
        if in_function and m not in LAZY_ALLOWED
    ]
    assert not inside, "\n".join(inside)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, p in MODULES.items():
        for t, _, _ in _imports(m, p):
            graph[m].add(t)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w == "neurocxr":
                continue  # the lazy API package (LAZY_ALLOWED)
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            # the model registry's lazy fill (LAZY_ALLOWED) closes a loop inside the models package only
            if len(component) > 1 and not all(c.startswith("neurocxr.models") for c in component):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert not cycles, cycles


def test_every_module_has_a_stage() -> None:
    assert {_stage(m) for m in MODULES} <= set(STAGES)
    assert {
        "neurocxr.data.datasets",
        "neurocxr.training.train",
        "neurocxr.deploy.deployment",
        "neurocxr.report.stage",
        "neurocxr.models.loaded",
    } <= set(MODULES)
