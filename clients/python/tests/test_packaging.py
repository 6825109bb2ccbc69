"""Packaging: `pip install clients/python` into a fresh virtualenv gives a working saver without
psycopg; the sdist ships no tests; the declared dependency floors are the ones the generated stubs
check and the ones the min venv tests; the licence file is the repository's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from _harness import REPO_ROOT, TESTS_DIR

CLIENT_ROOT = TESTS_DIR.parent
STUBS = CLIENT_ROOT / "src" / "checkpointd_client" / "_proto" / "checkpoint" / "v1"
COPY_IGNORE = shutil.ignore_patterns(".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache")

SMOKE = textwrap.dedent(
    """
    import asyncio, importlib.util, sys
    from checkpointd_client import GrpcCheckpointSaver, CheckpointdClient
    from langgraph.checkpoint.base import empty_checkpoint

    assert importlib.util.find_spec("psycopg") is None, "psycopg must not be needed"
    target = sys.argv[1]
    config = {"configurable": {"thread_id": "packaging-smoke", "checkpoint_ns": ""}}
    cp = empty_checkpoint()
    cp["channel_values"] = {"items": [1, 2, 3]}
    cp["channel_versions"] = {"items": 1}

    async def main():
        async with GrpcCheckpointSaver(target) as saver:
            stored = await saver.aput(config, cp, {"step": 1}, {"items": 1})
            got = await saver.aget_tuple(stored)
            assert got.checkpoint["channel_values"]["items"] == [1, 2, 3], got
            # The sync API from a worker thread (on the loop's own thread it refuses to block).
            assert await asyncio.to_thread(saver.get_tuple, stored) == got
            await saver.adelete_thread("packaging-smoke")

    asyncio.run(main())
    with CheckpointdClient(target) as client:
        assert client.health() == "SERVING"
    print("packaging smoke OK")
    """
)


def test_pip_install_into_a_fresh_venv(server, tmp_path: Path) -> None:
    source = tmp_path / "src-copy"  # build from a copy: the build leaves files next to its sources
    shutil.copytree(CLIENT_ROOT, source, ignore=COPY_IGNORE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    smoke = subprocess.run(
        [str(python), "-c", SMOKE, server.target], capture_output=True, text=True, timeout=120, env=env
    )
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "packaging smoke OK" in smoke.stdout
    # The wheel carries the generated stubs with their type stubs and the py.typed marker.
    site = next((venv / "lib").glob("python3*/site-packages"))
    package = site / "checkpointd_client"
    assert (package / "py.typed").exists()
    assert (package / "_proto" / "checkpoint" / "v1" / "checkpoint_pb2.pyi").exists()


def _declared_dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((CLIENT_ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(spec).name: Requirement(spec) for spec in project["dependencies"]}


def _floor(requirement: Requirement) -> Version:
    (floor,) = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return floor


def _pins(requirements_file: str) -> dict[str, Version]:
    pins = {}
    for line in (CLIENT_ROOT / requirements_file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (pin,) = requirement.specifier
            assert pin.operator == "==", line
            pins[requirement.name] = Version(pin.version)
    return pins


def test_declared_floors_are_the_ones_the_generated_stubs_check() -> None:
    declared = _declared_dependencies()
    grpc_code = (STUBS / "checkpoint_pb2_grpc.py").read_text()
    (grpc_generated,) = re.findall(r"^GRPC_GENERATED_VERSION = '([^']+)'", grpc_code, re.MULTILINE)
    pb2_code = (STUBS / "checkpoint_pb2.py").read_text()
    (protobuf_gencode,) = re.findall(
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", pb2_code
    )
    assert _floor(declared["grpcio"]) == Version(grpc_generated)
    assert _floor(declared["protobuf"]) == Version(".".join(protobuf_gencode))


def test_min_venv_pins_every_declared_floor_and_newest_fits_the_ranges() -> None:
    declared = _declared_dependencies()
    minimum, newest = _pins("requirements-min.txt"), _pins("requirements-newest.txt")
    for name, requirement in declared.items():
        assert minimum[name] == _floor(requirement), f"requirements-min.txt must pin {name} at its floor"
        assert requirement.specifier.contains(newest[name]), f"{name}=={newest[name]} is outside {requirement}"
        assert newest[name] > minimum[name], name
    # The generator is the grpcio-tools matching the grpcio floor.
    assert minimum["grpcio-tools"] == _floor(declared["grpcio"])


def test_sdist_ships_the_package_and_licence_without_tests(tmp_path: Path) -> None:
    source = tmp_path / "src-copy"
    shutil.copytree(CLIENT_ROOT, source, ignore=COPY_IGNORE)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = (tmp_path / "dist").glob("checkpointd_client-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
        pkg_info = tar.extractfile(next(n for n in tar.getnames() if n.endswith("/PKG-INFO") and n.count("/") == 1))
        metadata = pkg_info.read().decode()
    assert not [n for n in names if n.startswith(("tests", "benchmarks", "scripts"))], names
    assert not [n for n in names if n.startswith("requirements")], names
    assert {"LICENSE", "README.md", "pyproject.toml", "src/checkpointd_client/saver.py"} <= set(names), names
    assert "src/checkpointd_client/_proto/checkpoint/v1/checkpoint_pb2.pyi" in names
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    for label in ("Homepage", "Repository", "Issues"):
        assert f"Project-URL: {label}, https://" in metadata, label


def test_package_licence_is_the_repository_licence() -> None:
    licence = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    assert (CLIENT_ROOT / "LICENSE").read_text() == licence, "clients/python/LICENSE must be a copy of LICENSE"
