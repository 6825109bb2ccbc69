"""The checked-in stubs must be exactly what scripts/generate.sh produces from proto/, with the
pinned generator (grpcio-tools of requirements-min.txt), and must import in every venv."""

from __future__ import annotations

import filecmp
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from _harness import REPO_ROOT, TESTS_DIR

CLIENT_ROOT = TESTS_DIR.parent
CHECKED_IN = CLIENT_ROOT / "src" / "checkpointd_client" / "_proto"


def _load_generator():
    spec = importlib.util.spec_from_file_location("_generate", CLIENT_ROOT / "scripts" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _generator_python() -> str:
    """The interpreter of the min venv, which holds the pinned grpcio-tools (created or refreshed
    through scripts/pinned-venv.sh, as scripts/generate.sh does)."""
    script = 'source scripts/pinned-venv.sh && ensure_pinned_venv min "$PWD/requirements-min.txt"'
    done = subprocess.run(
        ["bash", "-c", script], cwd=CLIENT_ROOT, capture_output=True, text=True, timeout=900, env=dict(os.environ)
    )
    assert done.returncode == 0, f"could not prepare the generator venv:\n{done.stderr}"
    return done.stdout.strip().splitlines()[-1]


def _tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    generator = _load_generator()
    assert generator.PROTO_ROOT == REPO_ROOT / "proto"
    done = subprocess.run(
        [_generator_python(), str(CLIENT_ROOT / "scripts" / "generate.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    fresh, current = _tree(tmp_path), _tree(CHECKED_IN)
    assert fresh == current, (
        f"generated file set differs: missing {sorted(map(str, fresh - current))}, "
        f"extra {sorted(map(str, current - fresh))}; run clients/python/scripts/generate.sh"
    )
    stale = [str(rel) for rel in sorted(fresh) if not filecmp.cmp(tmp_path / rel, CHECKED_IN / rel, shallow=False)]
    assert not stale, f"stale generated stubs {stale}: run clients/python/scripts/generate.sh"


def test_generated_stubs_record_the_pinned_generator() -> None:
    generator = _load_generator()
    grpc_code = (CHECKED_IN / "checkpoint" / "v1" / "checkpoint_pb2_grpc.py").read_text()
    assert f"GRPC_GENERATED_VERSION = '{generator.GRPCIO_TOOLS_VERSION}'" in grpc_code


def test_generated_stubs_import_from_the_package() -> None:
    from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2, checkpoint_pb2_grpc

    assert checkpoint_pb2.DESCRIPTOR.package == "checkpoint.v1"
    assert checkpoint_pb2_grpc.CheckpointServiceStub.__module__.startswith("checkpointd_client._proto")
    # A message round-trips through the installed protobuf runtime.
    request = checkpoint_pb2.PutRequest(thread_id="t", checkpoint_id="c", parent_checkpoint_id="p")
    assert checkpoint_pb2.PutRequest.FromString(request.SerializeToString()) == request
    for path in CHECKED_IN.rglob("*.py"):
        text = path.read_text()
        assert "@generated" in text.splitlines()[0], path
        assert "from checkpoint.v1 import" not in text, path


def test_generated_stubs_import_without_warnings() -> None:
    """No version warning from protobuf or grpcio under the installed runtimes (run in the min,
    newest and test venvs by scripts/test.sh)."""
    code = "import checkpointd_client._proto.checkpoint.v1.checkpoint_pb2_grpc, checkpointd_client"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
