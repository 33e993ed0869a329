#!/usr/bin/env python3
"""The minimum Rust version, derived offline from the lock file: the highest `rust-version` of any locked
package that the build or the tests use on Linux (`cargo metadata --locked --filter-platform`, which reads
only the lock file and the registry sources cargo already has). Fails when Cargo.toml's `rust-version` is not
exactly that, so the README's and Cargo.toml's minimum stay true as dependencies move.

Usage: python3 .ci/msrv.py   (from anywhere in the repository; prints the version and the packages that set it)
"""

import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = "x86_64-unknown-linux-gnu"


def version(text):
    return tuple(int(part) for part in text.split("."))


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", TARGET],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    used = {node["id"] for node in metadata["resolve"]["nodes"]}
    ours = {member for member in metadata["workspace_members"]}
    needs = [
        (version(package["rust_version"]), package["name"], package["version"])
        for package in metadata["packages"]
        if package["id"] in used and package["id"] not in ours and package.get("rust_version")
    ]
    if not needs:
        sys.exit("no locked package declares a rust-version")
    highest = max(needs)[0]
    setters = sorted(f"{name} {ver}" for need, name, ver in needs if need == highest)
    manifest = (ROOT / "Cargo.toml").read_text()
    declared = re.search(r'^rust-version\s*=\s*"([^"]+)"', manifest, re.M)
    shown = ".".join(str(part) for part in highest[:2]) if highest[2:] in ((), (0,)) else ".".join(map(str, highest))
    print(f"minimum Rust version: {shown} (set by {', '.join(setters)})")
    if not declared or version(declared.group(1)) != highest[: len(version(declared.group(1)))] or len(version(declared.group(1))) < 2:
        sys.exit(f"Cargo.toml says rust-version = {declared.group(1) if declared else None!r}; the lock file needs {shown}")
    readme = (ROOT / "README.md").read_text()
    if f"Rust toolchain ({shown} or newer)" not in readme:
        sys.exit(f"README.md does not say the toolchain minimum ({shown}) as 'Rust toolchain ({shown} or newer)'")


if __name__ == "__main__":
    main()
