"""The one path rule: a name that becomes a path stays inside its root, and no link is followed.

Class names, source names, manifest fields, archive members, quarantine entries and query file
names all come from someone else's files or command line. Each is turned into a path here, and
only here: a relative POSIX path without ``..``, drive letters, backslashes or NUL, under a root
where no component on the way is a symbolic link. Anything else is refused in one sentence.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class PathEscape(ValueError):
    """A name that would become a path outside its root, or through a symbolic link."""


def relative(name: str, what: str) -> PurePosixPath:
    """``name`` as a relative path that cannot climb out of whatever root it is joined to."""
    path = PurePosixPath(name)
    if (
        not name
        or "\x00" in name
        or "\\" in name
        or path.is_absolute()
        or ".." in path.parts
        or re.match(r"^[A-Za-z]:", name)
    ):
        raise PathEscape(
            f"{what} {name!r}: not a relative path inside its folder (no leading '/', no '..', "
            "no drive or backslash)"
        )
    return path


def inside(root: Path, name: str, what: str) -> Path:
    """``root/name``, refused unless it stays inside ``root`` with no symbolic link on the way
    (an existing link, even one pointing inside, is refused: links are never followed)."""
    parts = relative(name, what).parts
    here = Path(root)
    for part in parts:
        here = here / part
        if here.is_symlink():
            raise PathEscape(f"{what} {name!r}: {here} is a symbolic link; links are not followed")
    if not here.resolve().is_relative_to(Path(root).resolve()):
        raise PathEscape(f"{what} {name!r}: resolves outside {root}")
    return here


def component(name: str, what: str) -> str:
    """``name`` as one safe file or folder name (letters, digits, ``._+-``, ≤128 characters)."""
    if not _COMPONENT.match(name) or name in (".", ".."):
        raise PathEscape(
            f"{what} {name!r}: use one folder name of letters, digits, '.', '_', '+' or '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return name


def as_component(text: str, fallback: str = "source") -> str:
    """A safe single name made from ``text`` (for a default such as a source's folder name)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._-+")[:128]
    return cleaned if cleaned and _COMPONENT.match(cleaned) else fallback


def followed_link(path: Path, root: Path) -> str | None:
    """Where ``path`` (under ``root``) really is when a link on the way leads elsewhere: the
    link's target as text; None for a plain file whose real path is inside ``root``."""
    if path.is_symlink():
        return str(path.readlink())
    real = path.resolve()
    return None if real.is_relative_to(Path(root).resolve()) else str(real)


def unique_names(stems: list[str]) -> list[str]:
    """One output name per input: a stem seen before gets ``-2``, ``-3``… (in input order)."""
    seen: dict[str, int] = {}
    taken = set(stems)
    out = []
    for stem in stems:
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        name = stem if count == 1 else f"{stem}-{count}"
        while count > 1 and name in taken:
            count += 1
            seen[stem] = count
            name = f"{stem}-{count}"
        taken.add(name)
        out.append(name)
    return out
