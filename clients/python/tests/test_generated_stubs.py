"""The checked-in stubs must be exactly what scripts/generate.sh produces from proto/."""

from __future__ import annotations

import filecmp
import importlib.util
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


def _tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    generator = _load_generator()
    assert generator.PROTO_ROOT == REPO_ROOT / "proto"
    generator.generate(tmp_path)
    fresh, current = _tree(tmp_path), _tree(CHECKED_IN)
    assert fresh == current, (
        f"generated file set differs: missing {sorted(map(str, fresh - current))}, "
        f"extra {sorted(map(str, current - fresh))}; run clients/python/scripts/generate.sh"
    )
    stale = [str(rel) for rel in sorted(fresh) if not filecmp.cmp(tmp_path / rel, CHECKED_IN / rel, shallow=False)]
    assert not stale, f"stale generated stubs {stale}: run clients/python/scripts/generate.sh"


def test_generated_stubs_import_from_the_package() -> None:
    from checkpointd_client._proto.checkpoint.v1 import checkpoint_pb2, checkpoint_pb2_grpc

    assert checkpoint_pb2.DESCRIPTOR.package == "checkpoint.v1"
    assert checkpoint_pb2_grpc.CheckpointServiceStub.__module__.startswith("checkpointd_client._proto")
    for path in CHECKED_IN.rglob("*.py"):
        text = path.read_text()
        assert "@generated" in text.splitlines()[0], path
        assert "from checkpoint.v1 import" not in text, path
