#!/usr/bin/env python3
"""Compiles (and runs, where it can) every ```swift block of README.md and the DocC articles.

Each block is placed by what it is:

- a manifest (it contains `import PackageDescription`) is the Package.swift of a throwaway package
  under .build-snippets/<package name>/, used verbatim: `../SerialLoop` beside it is a symlink to
  this repository, so `.package(path: "../SerialLoop")` and `../SerialLoop/Extensions` resolve as
  they do for a user with a clone beside their package;
- a block whose first line is `// Sources/…` or `// Tests/…` is that file of the package (the
  document's own manifest's package, else `MyApp`, the README's). The same file in two documents
  must be the same text;
- any other block goes to targets the script appends to that package's manifest, one set per
  document: a block with `@Test` is a file of a test target; a block with an `import` or `@main` is
  the main file of an executable target of its own; a block marked `<!-- snippet: body -->` (the
  line before its fence) is the body of `func snippet(loop: Loop) async throws`; one marked
  `<!-- snippet: decl -->` is top-level declarations in a library target.

Then each package is built (`swift build --build-tests`), its tests run (`swift test`), and every
executable run (60 s timeout, exit 0) except those of blocks marked `<!-- snippet: compile -->`.
`<!-- snippet: skip -->` leaves a block out; keep that rare.

    .ci/check-snippets.py            # every package
    .ci/check-snippets.py --no-run   # build only
    SNIPPETS_PACKAGE_ROOT=/path/to/a/clone .ci/check-snippets.py   # against another copy of the package
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".build-snippets"
DOCUMENTS = [ROOT / "README.md"] + sorted((ROOT / "Sources/SerialLoop/SerialLoop.docc").glob("*.md"))
DEFAULT_PACKAGE = "MyApp"
PRODUCTS = '.product(name: "SerialLoop", package: "SerialLoop"), .product(name: "SerialLoopNet", package: "SerialLoop")'
TEST_PRODUCTS = PRODUCTS + ', .product(name: "SerialLoopTesting", package: "SerialLoop"), .product(name: "SerialLoopNetSimulation", package: "SerialLoop")'
BODY_IMPORTS = "import Foundation\nimport Glibc\nimport SerialLoop\nimport SerialLoopNet\n"


class Block:
    def __init__(self, document, line, text, marker):
        self.document, self.line, self.text, self.marker = document, line, text, marker

    @property
    def where(self):
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def blocks(document):
    lines = document.read_text().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```swift":
            start = i
            marker = None
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            match = re.match(r"<!--\s*snippet:\s*(\w+)\s*-->", lines[j].strip()) if j >= 0 else None
            if match:
                marker = match.group(1)
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            yield Block(document, start + 1, "\n".join(body) + "\n", marker)
        i += 1


def module_name(document):
    return re.sub(r"\W", "", document.stem)


class Package:
    def __init__(self, name):
        self.name = name
        self.manifest = None          # (text, where)
        self.files = {}               # path -> (text, where)
        self.extra_targets = []       # manifest lines appended
        self.no_run = set()           # executable names not to run
        self.executables = []

    def add_file(self, path, text, where):
        if path in self.files and self.files[path][0] != text:
            sys.exit(f"{where}: {path} differs from the copy at {self.files[path][1]}")
        self.files[path] = (text, where)


def collect():
    packages = {}

    def package(name):
        return packages.setdefault(name, Package(name))

    for document in DOCUMENTS:
        found = list(blocks(document))
        manifests = [b for b in found if "import PackageDescription" in b.text]
        home = DEFAULT_PACKAGE
        for block in manifests:
            name = re.search(r'name:\s*"([^"]+)"', block.text).group(1)
            target = package(name)
            if target.manifest and target.manifest[0] != block.text:
                sys.exit(f"{block.where}: the manifest of {name} differs from the one at {target.manifest[1]}")
            target.manifest = (block.text, block.where)
            home = name
        module = module_name(document)
        counter = 0
        library, tests = [], []
        for block in found:
            if block.marker == "skip" or "import PackageDescription" in block.text:
                continue
            first = block.text.split("\n", 1)[0].strip()
            path = re.match(r"//\s*((Sources|Tests)/\S+\.swift)$", first)
            target = package(home)
            if path:
                target.add_file(path.group(1), block.text, block.where)
                if block.marker == "compile" and path.group(1).startswith("Sources/"):
                    target.no_run.add(path.group(1).split("/")[1])
                continue
            counter += 1
            header = f"// {block.where}\n"
            if block.marker == "body":
                text = f"{header}{BODY_IMPORTS}\nfunc snippet{counter}(loop: Loop) async throws {{\n{block.text}}}\n"
                target.add_file(f"Sources/{module}Snippets/Body{counter}.swift", text, block.where)
                library.append(counter)
            elif block.marker == "decl":
                target.add_file(f"Sources/{module}Snippets/Decl{counter}.swift", f"{header}{BODY_IMPORTS}\n{block.text}", block.where)
                library.append(counter)
            elif "@Test" in block.text:
                target.add_file(f"Tests/{module}SnippetTests/Test{counter}.swift", header + block.text, block.where)
                tests.append(counter)
            elif "@main" in block.text or re.search(r"^import ", block.text, re.M):
                name = f"{module}Snippet{counter}"
                file = "App.swift" if "@main" in block.text else "main.swift"
                target.add_file(f"Sources/{name}/{file}", header + block.text, block.where)
                target.extra_targets.append(f'.executableTarget(name: "{name}", dependencies: [{PRODUCTS}], path: "Sources/{name}")')
                if block.marker == "compile":
                    target.no_run.add(name)
            else:
                sys.exit(f"{block.where}: a fragment with no import: mark it <!-- snippet: body -->, decl, or skip")
        if library:
            target = package(home)
            target.extra_targets.append(f'.target(name: "{module}Snippets", dependencies: [{PRODUCTS}], path: "Sources/{module}Snippets")')
        if tests:
            target = package(home)
            target.extra_targets.append(f'.testTarget(name: "{module}SnippetTests", dependencies: [{TEST_PRODUCTS}], path: "Tests/{module}SnippetTests")')
    return packages


def write(packages):
    WORK.mkdir(exist_ok=True)
    link = WORK / "SerialLoop"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(os.environ.get("SNIPPETS_PACKAGE_ROOT", ROOT)))
    for package in packages.values():
        if not package.manifest:
            sys.exit(f"no manifest for package {package.name} (its files: {', '.join(package.files)})")
        directory = WORK / package.name
        for sub in ("Sources", "Tests"):
            shutil.rmtree(directory / sub, ignore_errors=True)
        directory.mkdir(exist_ok=True)
        manifest = package.manifest[0]
        if package.extra_targets:
            manifest += ("\n// Added by .ci/check-snippets.py: the snippets that are not files of this package.\n"
                         "package.targets += [\n" + "".join(f"    {t},\n" for t in package.extra_targets) + "]\n")
        (directory / "Package.swift").write_text(manifest)
        for path, (text, _) in package.files.items():
            (directory / path).parent.mkdir(parents=True, exist_ok=True)
            (directory / path).write_text(text)
        package.executables = sorted({p.split("/")[1] for p in package.files if p.startswith("Sources/")
                                      and p.endswith(("main.swift", "App.swift"))})


def run(command, cwd, timeout=None):
    print(f"$ (cd {cwd.relative_to(ROOT)} && {' '.join(command)})", flush=True)
    return subprocess.run(command, cwd=cwd, timeout=timeout).returncode


def main():
    no_run = "--no-run" in sys.argv
    packages = collect()
    write(packages)
    failures = []
    for package in packages.values():
        directory = WORK / package.name
        count = len(package.files) + 1
        print(f"== {package.name}: {count} files from {', '.join(sorted({w.split(':')[0] for _, w in package.files.values()} | {package.manifest[1].split(':')[0]}))}", flush=True)
        if run(["swift", "build", "--build-tests"], directory) != 0:
            failures.append(f"{package.name}: build failed")
            continue
        if no_run:
            continue
        if any(p.startswith("Tests/") for p in package.files):
            if run(["swift", "test", "--skip-build"], directory, timeout=600) != 0:
                failures.append(f"{package.name}: tests failed")
        for executable in package.executables:
            if executable in package.no_run:
                continue
            try:
                if run(["swift", "run", "--skip-build", executable], directory, timeout=60) != 0:
                    failures.append(f"{package.name}: {executable} failed")
            except subprocess.TimeoutExpired:
                failures.append(f"{package.name}: {executable} did not end within 60 s")
    if failures:
        sys.exit("snippet check failed:\n  " + "\n  ".join(failures))
    print("every snippet compiles" + ("" if no_run else " and runs"))


if __name__ == "__main__":
    main()
