"""The package's layout is its pipeline: a module imports only from its own room or rooms
before it (sim -> task -> rl -> oracle -> student -> robot side -> evaluation -> viz -> cli),
and no modules import each other in a cycle. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "penspin"
RANK = {"config": 0, "cli_support": 1, "deploy": 1, "sim": 1, "task": 2, "rl": 3, "oracle": 4,
        "student": 5, "calibration": 6, "robot": 6, "replay": 6, "finetune": 6,
        "evaluation": 7, "viz": 8, "cli": 9}
# The robot side, in its own order: a robot serves replay, replay serves finetuning.
SIDE = {"robot": 0, "calibration": 1, "replay": 1, "finetune": 2}


def _modules() -> dict[str, set[str]]:
    """``penspin.x.y`` -> the penspin modules it imports."""
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from a.b import c``: a.b, and a.b.c where c is a module
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        out[name] = deps
    return {m: {d for d in deps if d in out} for m, deps in out.items()}


def _room(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_no_module_imports_from_a_later_room():
    bad = []
    for module, deps in _modules().items():
        if module == "penspin":
            continue
        room = _room(module)
        for dep in deps:
            other = _room(dep)
            if other == "penspin" or other == room:
                continue
            later = RANK[other] > RANK[room] or (
                RANK[other] == RANK[room] and SIDE.get(other, 0) > SIDE.get(room, 0))
            if later or (RANK[other] == RANK[room] and other not in SIDE):
                bad.append(f"{module} -> {dep}")
    assert not bad, "imports against the pipeline order:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    graph = _modules()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle.extend(path[path.index(dep):] + [dep] if dep in path else [node, dep])
                return True
            if dep not in state and visit(dep, [*path, dep]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if start not in state and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)


def test_every_room_is_ranked():
    rooms = {_room(m) for m in _modules() if m != "penspin"}
    assert rooms <= set(RANK), f"rank these rooms: {sorted(rooms - set(RANK))}"
