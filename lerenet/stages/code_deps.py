"""A stage's code dependencies, derived from its imports rather than written by hand.

A hand-written list of the files a stage runs drifted from its imports (the train stage's
missed three modules it imported), so dvc.yaml re-ran nothing when they changed. Here the list
is the closure of the stage module's imports within ``lerenet``: every ``import``/``from …
import`` in a module's source, at module level or inside a function (the library imports
heavy packages lazily), except those only under ``if TYPE_CHECKING:``. Importing ``a.b.c``
also runs the packages ``a`` and ``a.b``, so their ``__init__.py`` count. A package that finds
its modules at run time (``pkgutil.iter_modules``, the backbone registry) depends on all of
them. A folder whose every module is in the closure is listed as the folder. The declaration
machinery (``declare``, this module) is left out: a stage imports it for its ``SPEC``, and
editing it changes no stage's result.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.name  # "lerenet"
# how stages are declared, not what they run: a stage module imports it for its SPEC only
DECLARING = frozenset({f"{ROOT}.stages.declare", f"{ROOT}.stages.code_deps"})


def module_file(name: str, package: Path = PACKAGE) -> Path | None:
    """The source file of module ``name`` (``lerenet.x.y``), or None if it is not one."""
    parts = name.split(".")
    if parts[0] != ROOT:
        return None
    base = package.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _import_nodes(tree: ast.AST):
    """Every import statement of ``tree``, skipping ``if TYPE_CHECKING:`` bodies."""
    for node in ast.iter_child_nodes(tree):
        if _is_type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes_of(child))
            continue
        yield from _import_nodes_of(node)


def _import_nodes_of(node: ast.AST):
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _import_nodes(node)


class Sources:
    """Each module file parsed once (a stage's closure and its folder check meet the same
    files); the parse trees live as long as one derivation, not in module state."""

    def __init__(self) -> None:
        self._trees: dict[Path, tuple[ast.Module, str]] = {}

    def read(self, path: Path) -> tuple[ast.Module, str]:
        if path not in self._trees:
            text = path.read_text()
            self._trees[path] = (ast.parse(text, filename=str(path)), text)
        return self._trees[path]


def imported_modules(path: Path, name: str, sources: Sources | None = None) -> set[str]:
    """The ``lerenet`` modules the source at ``path`` (module ``name``) imports."""
    tree, text = (sources or Sources()).read(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules, if any
    if "iter_modules(" in text and path.name == "__init__.py":
        found.update(f"{name}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__")
    return {m for m in found if m.split(".")[0] == ROOT}


def inert(path: Path, sources: Sources | None = None) -> bool:
    """A module with nothing but a docstring (an empty ``__init__.py``): it runs no code, so
    it is not listed (it still counts when deciding whether a folder is wholly used)."""
    body = (sources or Sources()).read(path)[0].body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def _with_packages(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(
    entries: tuple[str, ...], package: Path = PACKAGE, sources: Sources | None = None
) -> set[Path]:
    """The source files that importing ``entries`` (module names) can run."""
    sources = sources or Sources()
    seen: set[str] = set()
    files: set[Path] = set()
    todo = [m for entry in entries for m in _with_packages(entry)]
    while todo:
        name = todo.pop()
        if name in seen or name in DECLARING:
            continue
        seen.add(name)
        path = module_file(name, package)
        if path is None:
            continue  # a name imported from a module, not a module
        files.add(path)
        for found in imported_modules(path, name, sources):
            todo.extend(m for m in _with_packages(found) if m not in seen)
    return files


def _collapse(files: set[Path], folder: Path, sources: Sources) -> list[Path]:
    """``files`` under ``folder``, with every fully covered sub-folder as one entry."""
    modules = [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts]
    if modules and all(p in files or inert(p, sources) for p in modules) and folder != PACKAGE:
        return [folder]
    out = [p for p in sorted(folder.glob("*.py")) if p in files and not inert(p, sources)]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"):
        out += _collapse(files, sub, sources)
    return out


def code_deps(entries: tuple[str, ...], repo: Path | None = None) -> tuple[str, ...]:
    """Repository paths (files, or folders wholly used) of the code ``entries`` run."""
    repo = repo or PACKAGE.parent
    sources = Sources()
    files = closure(entries, sources=sources)
    return tuple(p.relative_to(repo).as_posix() for p in _collapse(files, PACKAGE, sources))
