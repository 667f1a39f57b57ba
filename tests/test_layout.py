"""The house rules of the package's layout (docs/design.md, §Layout), checked on the source itself:

- the remote-code modules (the flat modules that ``save_pretrained`` copies next to the weights) import their
  siblings with a single dot only, import nothing else of the package, and form no import circle;
- no module imports another module's private (underscore) name;
- no module imports a module on a floor above its own (the floors of docs/design.md §Layout), and nothing but the
  commands imports the floors of long recordings and commands.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emvfer_hf"
#: the modules transformers copies next to a checkpoint: the model's, config's and processor's files and every
#: sibling they import (found below by following their single-dot imports)
REMOTE_CODE_ROOTS = ("configuration_mert", "modeling_mert", "video_processing_mert")
#: the floors that use the model and the processor; nothing below them may import them
UPPER_FLOORS = ("analysis", "corpus", "cli", "live", "demo", "__main__")
#: docs/design.md §Layout: 0 the model and the eye-movement format, 1 the rooms that read media, 2 one clip → result,
#: 3 long recordings, 4 the commands
FLOORS = {
    "configuration_mert": 0, "modeling_mert": 0, "eye_prior_mert": 0, "eye_movement_mert": 0,
    "faces_mert": 1, "face_backends_mert": 1, "face_tracking_mert": 1, "face_identity_mert": 1,
    "eye_extraction_mert": 1, "video_io_mert": 1,
    "inference": 2, "precision": 2, "video_processing_mert": 2,
    "analysis": 3, "corpus": 3,
    "cli": 4, "__main__": 4, "demo": 4, "live": 4,
}  # fmt: skip
#: imports against the floors that keep a name importable where the README names it (a module ``__getattr__``
#: that imports on first use, never at load): (importer, imported)
COMPATIBILITY_SHIMS = {("eye_movement_mert", "eye_extraction_mert")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(level, module, names, at_module_level) of every import in ``path``, including those inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield node.level, node.module or "", [alias.name for alias in node.names], id(node) in top
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield 0, alias.name, [], id(node) in top


def _resolve(path: Path, level: int, module: str) -> str:
    """The package-relative name of a relative import's target ("" where it leaves the package)."""
    if level == 0:
        return module[len("emvfer_hf."):] if module.startswith("emvfer_hf.") else ("" if module != "emvfer_hf" else "")
    base = list(path.relative_to(PACKAGE).with_suffix("").parts[:-1])
    if level - 1 > len(base):
        return ""
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def _remote_code_modules() -> set:
    """The flat modules reachable from the roots through single-dot imports."""
    found, todo = set(), list(REMOTE_CODE_ROOTS)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for level, module, _, _ in _imports(PACKAGE / f"{name}.py"):
            if level == 1 and module:
                todo.append(module)
    return found


def test_remote_code_modules_import_siblings_with_one_dot_and_form_no_circle():
    remote = _remote_code_modules()
    assert {"faces_mert", "eye_movement_mert", "video_io_mert"} <= remote
    graph = {}
    for name in sorted(remote):
        path = PACKAGE / f"{name}.py"
        assert path.exists(), f"{name} is imported by remote code but is not a flat module"
        graph[name] = set()
        for level, module, _, at_top in _imports(path):
            assert level <= 1, f"{name}.py: `from {'.' * level}{module} import ...` (remote code takes one dot only)"
            assert not module.startswith("emvfer_hf"), f"{name}.py imports {module} absolutely (remote code cannot)"
            if level == 1 and at_top:
                graph[name].add(module)
    # no circle among the module-level imports
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for target in graph.get(node, ()):
            assert state.get(target) != "open", "import circle: " + " -> ".join([*trail, node, target])
            if target not in state:
                visit(target, [*trail, node])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_private_name_of_another(path):
    for level, module, names, _ in _imports(path):
        target = _resolve(path, level, module)
        if not target and not (level == 0 and module.startswith("emvfer_hf")):
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{path.relative_to(PACKAGE)} imports private {private} from {target or module}"
        # a private module (data/_utils.py) serves its own package and the packages inside it
        parts = (target or module).split(".")
        owner = ".".join(parts[:-1])
        importer = _module_name(path)
        private_module = parts[-1].startswith("_") and not parts[-1].startswith("__")
        assert not private_module or importer == owner or importer.startswith(owner + "."), (
            f"{path.relative_to(PACKAGE)} imports the private module {target}")


def test_lower_floors_never_import_the_upper_floors():
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if name in UPPER_FLOORS:
            continue
        for level, module, names, _ in _imports(path):
            target = _resolve(path, level, module)
            climbed = {target, *(f"{target}.{n}" if target else n for n in names)} & set(UPPER_FLOORS)
            assert not climbed, f"{name} imports {sorted(climbed)}, a floor above it"


def test_no_module_imports_a_floor_above_its_own():
    assert set(FLOORS) == {_module_name(p) for p in PACKAGE.glob("*.py") if _module_name(p) in FLOORS}
    for name, floor in FLOORS.items():
        path = PACKAGE / f"{name}.py" if name else PACKAGE / "__init__.py"
        for level, module, names, _ in _imports(path):
            target = _resolve(path, level, module)
            for imported in {target, *(f"{target}.{n}" if target else n for n in names)}:
                if imported in FLOORS and FLOORS[imported] > floor:
                    assert (name, imported) in COMPATIBILITY_SHIMS, (
                        f"{name} (floor {floor}) imports {imported} (floor {FLOORS[imported]})")
