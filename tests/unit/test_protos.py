"""The contract: committed stubs are current, and every rpc, message, field and enum value is documented."""

from __future__ import annotations

import filecmp
import importlib.util
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "sdk" / "tilesmith" / "v1"
PROTOS = ROOT / "protos" / "tilesmith" / "v1"
EXPECTED = {"common", "tiling", "diffusion", "captioning", "bridge", "gateway"}


def _generator():
    spec = importlib.util.spec_from_file_location("_generate_protos", ROOT / "protos" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_service_has_a_proto() -> None:
    assert {p.stem for p in PROTOS.glob("*.proto")} == EXPECTED


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    _generator().generate(tmp_path)
    fresh = tmp_path / "tilesmith" / "v1"
    generated = sorted(p.name for p in fresh.iterdir())
    committed = sorted(p.name for p in STUBS.iterdir() if p.name not in ("__init__.py", "__pycache__"))
    assert generated == committed, "stale stubs: run `make proto`"
    _, mismatch, errors = filecmp.cmpfiles(fresh, STUBS, generated, shallow=False)
    assert mismatch + errors == [], "stale stubs: run `make proto`"


def _descriptor_set(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "contract.pb"
    args = [
        "protoc",
        f"-I{ROOT / 'protos'}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        "--include_source_info",
        f"--descriptor_set_out={out}",
        *(str(p) for p in sorted(PROTOS.glob("*.proto"))),
    ]
    assert protoc.main(args) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _undocumented(proto: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Paths of elements with no leading or trailing comment (SourceCodeInfo paths: 4=message, 2=field,
    3=nested message, 4/5 enum, 6=service, 2=method)."""
    documented = {
        tuple(loc.path)
        for loc in proto.source_code_info.location
        if loc.leading_comments or loc.trailing_comments
    }
    missing: list[str] = []

    def enum(path: tuple[int, ...], value: descriptor_pb2.EnumDescriptorProto, name: str) -> None:
        if path not in documented:
            missing.append(name)
        for i, item in enumerate(value.value):
            # The UNSPECIFIED zero value may go without comment when the enum's comment covers it.
            if item.number != 0 and (*path, 2, i) not in documented:
                missing.append(f"{name}.{item.name}")

    def message(path: tuple[int, ...], value: descriptor_pb2.DescriptorProto, name: str) -> None:
        if path not in documented:
            missing.append(name)
        for i, field in enumerate(value.field):
            if (*path, 2, i) not in documented:
                missing.append(f"{name}.{field.name}")
        for i, nested in enumerate(value.nested_type):
            if not nested.options.map_entry:
                message((*path, 3, i), nested, f"{name}.{nested.name}")
        for i, nested in enumerate(value.enum_type):
            enum((*path, 4, i), nested, f"{name}.{nested.name}")

    for i, value in enumerate(proto.message_type):
        message((4, i), value, value.name)
    for i, value in enumerate(proto.enum_type):
        enum((5, i), value, value.name)
    for i, service in enumerate(proto.service):
        if (6, i) not in documented:
            missing.append(service.name)
        for j, method in enumerate(service.method):
            if (6, i, 2, j) not in documented:
                missing.append(f"{service.name}.{method.name}")
    return missing


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_element_is_documented(tmp_path: Path, name: str) -> None:
    files = {Path(f.name).stem: f for f in _descriptor_set(tmp_path).file}
    assert _undocumented(files[name]) == []
