"""Finding and reading policy files: directories, files, includes, in-memory sources.

Loading yields the declarations in *source order*: files in load order, each file's
declarations in position order, an included file's standing in place of its `include`
line; a file already loaded is not loaded again.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from arbiter.lang.diagnostics import Diagnostic
from arbiter.lang.nodes import Decl, Include
from arbiter.lang.parser import parse_source


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One policy file: ``key`` is its relative path (``Policy.sources``), ``display``
    what diagnostics call it."""

    key: str
    display: str
    text: str


@dataclass(slots=True)
class Loaded:
    """Everything read for one policy, in source order."""

    files: list[SourceFile] = field(default_factory=list)
    decls: list[tuple[SourceFile, Decl]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


class _Loader:
    """Walks files and their includes; subclasses say where the text comes from."""

    def __init__(self) -> None:
        self.out = Loaded()
        self._seen: set[str] = set()

    def read(self, ident: str) -> SourceFile | str:  # pragma: no cover - abstract
        raise NotImplementedError

    def resolve(self, ident: str, relative: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def exists(self, ident: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, ident: str, at: tuple[str, int, int] | None = None) -> None:
        if ident in self._seen:
            return
        self._seen.add(ident)
        source = self.read(ident)
        if isinstance(source, str):
            file, line, col = at if at is not None else (ident, 1, 1)
            self.out.diagnostics.append(Diagnostic(file, line, col, source))
            return
        self.out.files.append(source)
        decls, diags = parse_source(source.display, source.text)
        self.out.diagnostics.extend(diags)
        for decl in decls:
            if isinstance(decl, Include):
                target = self.resolve(ident, decl.path)
                if not decl.path or not self.exists(target):
                    self.out.diagnostics.append(
                        Diagnostic(
                            source.display, decl.line, decl.col,
                            f"cannot include `{decl.path}`: no such file "
                            "(include paths are relative to the including file)",
                        )
                    )  # fmt: skip
                    continue
                self.load(target, (source.display, decl.line, decl.col))
            else:
                self.out.decls.append((source, decl))


class _FileLoader(_Loader):
    def __init__(self, base: str, displays: dict[str, str]) -> None:
        super().__init__()
        self.base = base
        self.displays = displays  # real path -> the name the user knows it by

    def read(self, ident: str) -> SourceFile | str:
        display = self.displays.get(ident, ident)
        try:
            text = Path(ident).read_text(encoding="utf-8-sig")  # tolerate a BOM
        except FileNotFoundError:
            return "cannot read this file: no such file"
        except UnicodeDecodeError:
            return "cannot read this file: it is not UTF-8 text"
        except OSError as exc:
            return f"cannot read this file: {exc.strerror or exc}"
        key = Path(os.path.relpath(ident, self.base)).as_posix()
        return SourceFile(key, display, text)

    def resolve(self, ident: str, relative: str) -> str:
        target = os.path.realpath(os.path.join(os.path.dirname(ident), relative))
        if target not in self.displays:
            parent = self.displays.get(ident, ident)
            self.displays[target] = os.path.normpath(
                os.path.join(os.path.dirname(parent), relative)
            )
        return target

    def exists(self, ident: str) -> bool:
        return os.path.isfile(ident)


class _MappingLoader(_Loader):
    def __init__(self, sources: Mapping[str, str]) -> None:
        super().__init__()
        self.sources = {_normalise(k): v for k, v in sources.items()}

    def read(self, ident: str) -> SourceFile | str:
        text = self.sources.get(ident)
        if text is None:
            return "no such file in the policy's sources"
        return SourceFile(ident, ident, text)

    def resolve(self, ident: str, relative: str) -> str:
        return _normalise(posixpath.join(posixpath.dirname(ident), relative))

    def exists(self, ident: str) -> bool:
        return ident in self.sources


def _normalise(key: str) -> str:
    return posixpath.normpath(key.replace("\\", "/"))


def load_files(paths: Iterable[str | os.PathLike[str]]) -> Loaded:
    """Load policy files and directories (every ``*.arb`` under one, sorted by relative
    path), in the order given, with their includes."""
    roots: list[tuple[str, str]] = []  # (real path, display)
    bases: list[str] = []  # keys are relative to the deepest folder holding every root
    problems: list[Diagnostic] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            found = sorted(
                (f.relative_to(p).as_posix(), f) for f in p.rglob("*.arb") if f.is_file()
            )
            if not found:
                problems.append(Diagnostic(str(p), 1, 1, "no .arb files in this directory"))
            roots.extend((os.path.realpath(f), str(p / rel)) for rel, f in found)
            bases.append(os.path.realpath(p))
        elif p.exists():
            roots.append((os.path.realpath(p), str(p)))
            bases.append(os.path.dirname(os.path.realpath(p)))
        else:
            problems.append(Diagnostic(str(p), 1, 1, "cannot read this file: no such file"))
    base = _common_base(bases)
    loader = _FileLoader(base, {real: display for real, display in roots})
    for real, _display in roots:
        loader.load(real)
    loader.out.diagnostics[:0] = problems
    return loader.out


def _common_base(dirs: list[str]) -> str:
    if not dirs:
        return os.getcwd()
    try:
        return os.path.commonpath(dirs)
    except ValueError:  # different drives
        return dirs[0]


def load_mapping(sources: Mapping[str, str]) -> Loaded:
    """Load a policy from ``{relative path: text}``, every file a root in sorted order,
    includes resolved inside the mapping."""
    loader = _MappingLoader(sources)
    for key in sorted(loader.sources):
        loader.load(key)
    if not loader.sources:
        loader.out.diagnostics.append(Diagnostic("<policy>", 1, 1, "the policy has no files"))
    return loader.out
