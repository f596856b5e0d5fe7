"""The package's layering, checked on the source text (nothing is imported).

Every import of a loratwin module is collected from every file under src/loratwin: module-level,
function-local and `if TYPE_CHECKING:` imports alike, absolute and relative. The rules:

* Stages, lowest first (see STAGE_LEVELS): a module may import only modules of its own stage or of
  a stage on an earlier level. Two stages on the same level (profiles and workload) are siblings and
  may not import each other, except for the pairs in ALLOWED_SIBLING_IMPORTS.
* `loratwin/__init__.py` is the public facade: it may import (re-export) anything, but no module
  imports it (`from loratwin import X` where X is not a module, or `import loratwin`).
* Nothing imports `loratwin.cli` (cli.py or a cli/ package) except modules of `loratwin.cli`.
* No import cycles between files. `from loratwin.a.b import c` is an import of the module
  loratwin.a.b.c when that is a module, else of loratwin.a.b; importing a package is importing its
  `__init__.py`, including from a submodule of that package.

All violations are reported at once, with file:line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "loratwin"

# Lowest first. A level may hold several stages; the stages of one level are siblings.
STAGE_LEVELS: tuple[tuple[str, ...], ...] = (
    ("base",),
    ("workload",),
    ("profiles",),  # a profile names its request-length table (workload.length_tables)
    ("twin",),
    ("lab",),
    ("validate",),
    ("sweep",),
    ("learn",),
    ("plan",),
    ("report",),
    ("cli",),
)
# Top-level modules that are not packages of their own stage.
BASE_MODULES = frozenset({"budget", "errors", "files", "grammar", "slo", "textfile", "threshold", "version", "yamlfile"})
# (importer stage, imported stage) between siblings of one level that are allowed. profiles and
# workload import neither each other today (checked when this test was written), so none is.
ALLOWED_SIBLING_IMPORTS: frozenset[tuple[str, str]] = frozenset()

LEVEL = {stage: level for level, stages in enumerate(STAGE_LEVELS) for stage in stages}


@dataclass(frozen=True)
class Import:
    importer: str  # module name, e.g. "loratwin.twin.result"
    target: str  # resolved module name, e.g. "loratwin.twin.engine"
    path: Path  # the importer's file
    lineno: int

    def where(self, root: Path) -> str:
        try:
            shown = self.path.relative_to(root)
        except ValueError:
            shown = self.path
        return f"{shown}:{self.lineno}"


def module_files(src: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py file of `package` under `src` (a package is its __init__)."""
    modules: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of the dotted `name` that is a module (the name itself when none is)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return name


def collect_imports(modules: dict[str, Path], package: str = PACKAGE) -> list[Import]:
    """Every import of a `package` module by a module of it, wherever in the file it stands."""
    found: list[Import] = []
    for module, path in modules.items():
        own_package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        found.append(Import(module, _resolve(alias.name, modules), path, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = own_package.split(".")
                    if node.level > 1:
                        base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if base != package and not base.startswith(package + "."):
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    target = submodule if submodule in modules else _resolve(base, modules)
                    found.append(Import(module, target, path, node.lineno))
    # one entry per imported module per line (`from m import a, b` imports m once), in file order
    return sorted(set(found), key=lambda imp: (str(imp.path), imp.lineno, imp.target))


def stage_of(module: str, package: str = PACKAGE) -> str | None:
    """The stage of a module; None for the facade (the package's __init__) and for unknown names."""
    parts = module.split(".")
    if parts == [package]:
        return None
    top = parts[1]
    if top in BASE_MODULES:
        return "base"
    return top if top in LEVEL else None


def layering_violations(imports: list[Import], root: Path, package: str = PACKAGE) -> list[str]:
    """Stage order, facade and cli violations, one line each."""
    problems: list[str] = []
    cli = f"{package}.cli"
    unstaged: set[str] = set()
    for imp in imports:
        where = imp.where(root)
        importer_is_cli = imp.importer == cli or imp.importer.startswith(cli + ".")
        target_is_cli = imp.target == cli or imp.target.startswith(cli + ".")
        if target_is_cli and not importer_is_cli:
            problems.append(f"{where}: {imp.importer} imports {imp.target}: only loratwin.cli may import the CLI")
            continue
        if imp.importer == package:  # the facade may re-export anything below the CLI
            continue
        if imp.target == package:
            problems.append(
                f"{where}: {imp.importer} imports the top-level package (the public facade): "
                "import from the module that defines the name instead"
            )
            continue
        importer_stage, target_stage = stage_of(imp.importer, package), stage_of(imp.target, package)
        for module, stage in ((imp.importer, importer_stage), (imp.target, target_stage)):
            if stage is None and module not in unstaged:
                unstaged.add(module)
                problems.append(f"{where}: {module} belongs to no stage: add it to STAGE_LEVELS or BASE_MODULES")
        if importer_stage is None or target_stage is None or importer_stage == target_stage:
            continue
        if LEVEL[target_stage] > LEVEL[importer_stage]:
            problems.append(
                f"{where}: {imp.importer} ({importer_stage}) imports {imp.target} ({target_stage}), a later stage"
            )
        elif (
            LEVEL[target_stage] == LEVEL[importer_stage]
            and (importer_stage, target_stage) not in ALLOWED_SIBLING_IMPORTS
        ):
            problems.append(
                f"{where}: {imp.importer} ({importer_stage}) imports {imp.target} ({target_stage}), "
                "a sibling stage on the same level"
            )
    return problems


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
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
                components.append(sorted(component))
    return components


def _shortest_cycle(start: str, graph: dict[str, set[str]], within: set[str]) -> list[str]:
    """A shortest cycle start -> ... -> start inside `within` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & within):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if succ not in seen:
                    seen.add(succ)
                    previous[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")  # pragma: no cover


def cycle_violations(imports: list[Import], modules: dict[str, Path], root: Path) -> list[str]:
    """One entry per group of modules that import each other in a circle (a strongly connected
    component): a shortest cycle through it, and every import inside the group, any of which may be
    the one to cut."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    sites: dict[tuple[str, str], list[str]] = {}
    for imp in imports:
        if imp.target in modules:
            graph[imp.importer].add(imp.target)
            sites.setdefault((imp.importer, imp.target), []).append(imp.where(root))
    problems = []
    for component in sorted(_strongly_connected(graph)):
        members = set(component)
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        cycle = _shortest_cycle(component[0], graph, members)
        steps = [f"{a} ({sites[a, b][0]})" for a, b in zip(cycle, cycle[1:])]
        edges = sorted(
            f"{a} -> {b} at {', '.join(sites[a, b])}" for a in component for b in sorted(graph[a] & members)
        )
        problems.append(
            "import cycle: " + " -> ".join([*steps, cycle[-1]]) + "\n    imports inside it:\n      " + "\n      ".join(edges)
        )
    return problems


def check_tree(src: Path, root: Path, package: str = PACKAGE) -> tuple[dict[str, Path], list[str]]:
    modules = module_files(src, package)
    imports = collect_imports(modules, package)
    return modules, layering_violations(imports, root, package) + cycle_violations(imports, modules, root)


def test_src_follows_the_layering():
    modules, problems = check_tree(SRC, ROOT)
    assert len(modules) > 50, f"found only {len(modules)} modules under {SRC / PACKAGE}"
    if problems:
        pytest.fail(f"{len(problems)} layering violations:\n" + "\n".join(problems), pytrace=False)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_violations_and_cycles(tmp_path):
    _write(
        tmp_path,
        {
            "loratwin/__init__.py": "from loratwin.errors import E\nimport loratwin.profiles\n",
            "loratwin/errors.py": "",
            "loratwin/twin/__init__.py": "from loratwin.twin.a import run\n",
            # the facade, a later stage, and the package's own __init__ (a cycle with it)
            "loratwin/twin/a.py": (
                "from loratwin.errors import E\n"
                "from loratwin import run\n"
                "def run():\n"
                "    from loratwin.plan.x import plan\n"
                "    from loratwin.twin import helper\n"
            ),
            "loratwin/workload/__init__.py": "import loratwin.profiles\n",
            "loratwin/profiles/__init__.py": "",
            "loratwin/plan/__init__.py": "",
            # relative and function-local imports make a cycle x -> y -> x; and the CLI
            "loratwin/plan/x.py": "from . import y\nfrom ..errors import E\n",
            "loratwin/plan/y.py": "def f():\n    from loratwin.plan.x import plan\n    import loratwin.cli\n",
            "loratwin/cli.py": "from loratwin.errors import E\n",
            "loratwin/mystery.py": "from loratwin.errors import E\n",
        },
    )
    modules, problems = check_tree(tmp_path, tmp_path)
    assert len(modules) == 11
    text = "\n".join(problems)
    assert "loratwin/twin/a.py:4: loratwin.twin.a (twin) imports loratwin.plan.x (plan), a later stage" in text
    assert "loratwin/twin/a.py:2: loratwin.twin.a imports the top-level package" in text
    assert "loratwin/workload/__init__.py:1: loratwin.workload (workload) imports loratwin.profiles (profiles)" in text
    assert "loratwin/plan/y.py:3: loratwin.plan.y imports loratwin.cli: only loratwin.cli may import" in text
    assert "loratwin.mystery belongs to no stage" in text
    assert "import cycle: loratwin.plan.x (loratwin/plan/x.py:1) -> loratwin.plan.y (loratwin/plan/y.py:2)" in text
    assert "import cycle: loratwin.twin (loratwin/twin/__init__.py:1) -> loratwin.twin.a (loratwin/twin/a.py:5)" in text
    # the facade and the CLI import nothing they may not; a package's own
    # submodules and earlier stages are fine
    assert not any(p.startswith("loratwin/__init__.py") or p.startswith("loratwin/cli.py") for p in problems)
    assert not any("loratwin/twin/a.py:1" in p or "loratwin/plan/x.py:2" in p for p in problems), text
    assert len(problems) == 7, text


def test_checker_passes_a_clean_tree(tmp_path):
    _write(
        tmp_path,
        {
            "loratwin/__init__.py": "from loratwin.twin import run\n",
            "loratwin/errors.py": "",
            "loratwin/yamlfile.py": "from loratwin.errors import E\n",
            "loratwin/twin/__init__.py": "from loratwin.twin.a import run\n",
            "loratwin/twin/a.py": "from loratwin import errors\nfrom .b import g\ndef run():\n    from loratwin.workload import w\n",
            "loratwin/twin/b.py": "import loratwin.yamlfile\n",
            "loratwin/workload/__init__.py": "",
            "loratwin/cli/__init__.py": "from loratwin.cli.main import app\n",
            "loratwin/cli/main.py": "from loratwin.twin.a import run\n",
        },
    )
    modules, problems = check_tree(tmp_path, tmp_path)
    assert len(modules) == 9
    assert problems == []
