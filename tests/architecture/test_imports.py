"""The layering rule and the absence of import cycles, read from the source (every import,
module-level or inside a function, counts)."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

PACKAGES = ("engine", "policy", "sensors", "scenes")


def _modules() -> dict[str, set[str]]:
    """module name → the modules of ours it imports."""
    graph: dict[str, set[str]] = {}
    files = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            rel = f.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            files[".".join(parts)] = (f, is_pkg)
    for name, (f, is_pkg) in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_pkg else name.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join(here + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _room(mod: str) -> str:
    parts = mod.split(".")
    if parts[0] == "engine" and len(parts) > 1 and parts[1] in ("session", "store", "research", "render",
                                                                  "console", "cli"):
        return "engine." + parts[1]
    return parts[0]


# who may not import whom (DESIGN.md: rooms and who may import whom)
FORBIDDEN = {
    "sensors": {"engine", "policy", "scenes"},
    "scenes": {"engine", "policy", "sensors"},
    "policy": {"engine", "scenes"},
    "engine.session": {"engine.console", "engine.research", "engine.render", "engine.cli"},
}


def test_rooms_import_only_what_the_layering_allows():
    graph = _modules()
    bad = []
    for mod, deps in graph.items():
        room = _room(mod)
        for d in deps:
            target = _room(d)
            for rule_room, banned in FORBIDDEN.items():
                if (room == rule_room or room.startswith(rule_room + ".")) and \
                        any(target == b or target.startswith(b + ".") for b in banned):
                    bad.append(f"{mod} imports {d}")
    assert not bad, "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = _modules()
    # a package's __init__ re-exporting its own modules is not a cycle between modules
    for mod, deps in graph.items():
        graph[mod] = {d for d in deps if not mod.startswith(d + ".")}
    assert _cycles(graph) == []


def test_the_checker_sees_a_cycle_and_a_breach():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _room("engine.session.core") == "engine.session"
    assert _room("policy.sim.env") == "policy"


HEAVY = ("torch", "gymnasium", "stable_baselines3")


def _run_isolated(code: str) -> list[str]:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("IMPORTED:")][-1]
    return line.removeprefix("IMPORTED:").split()


def test_the_cli_and_a_live_session_never_import_torch_gymnasium_or_sb3(tmp_path):
    code = (
        "import sys\n"
        "import engine.cli\n"
        "from engine.cli import main\n"
        f"rc = main(['run', '--display', 'none', '--speed', 'max', '--console', 'off', '--duration', '3m',"
        f" '--sensor', 'sim://?seed=2', '--sessions-dir', {str(tmp_path)!r}])\n"
        "assert rc == 0, rc\n"
        f"print('IMPORTED:', *[m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    assert _run_isolated(code) == []


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from engine.cli import COMMANDS, main\n"
        "for c in [None, *COMMANDS]:\n"
        "    try:\n"
        "        main(['--help'] if c is None else [c, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('IMPORTED:', *[m for m in ('numpy', 'scipy', 'numba', 'panda3d', 'fastapi') + "
        f"{HEAVY!r} if m in sys.modules])\n"
    )
    assert _run_isolated(code) == []
