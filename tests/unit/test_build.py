"""The contract tests run on bytecode compiled from the sources as they are (tools/build.py, called at
session start by tests/conftest.py)."""

from pathlib import Path

from tools import build


def test_build__compiled_from_the_current_sources():
    assert build.is_fresh(), "the build's recorded checksum differs from the sources'"


def _tree(root: Path) -> None:
    for name, text in {
        "ape-config.yaml": "name: x\n",
        "contracts/A.sol": "contract A {}\n",
        "contracts/utils/B.sol": "contract B {}\n",
        "contracts/.cache/dep/1.0/C.sol": "contract C {}\n",
        "contracts/notes.md": "not a source\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_checksum__changes_with_the_config_and_every_contract_source(tmp_path):
    _tree(tmp_path)
    before = build.checksum(tmp_path)
    for name in ["ape-config.yaml", "contracts/A.sol", "contracts/utils/B.sol"]:
        path = tmp_path / name
        text = path.read_text()
        path.write_text(text + " ")
        assert build.checksum(tmp_path) != before, name
        path.write_text(text)
    assert build.checksum(tmp_path) == before


def test_checksum__changes_when_a_source_is_renamed(tmp_path):
    _tree(tmp_path)
    before = build.checksum(tmp_path)
    (tmp_path / "contracts/A.sol").rename(tmp_path / "contracts/A2.sol")
    assert build.checksum(tmp_path) != before


def test_checksum__ignores_the_dependency_copy_and_other_files(tmp_path):
    _tree(tmp_path)
    before = build.checksum(tmp_path)
    (tmp_path / "contracts/.cache/dep/1.0/C.sol").write_text("contract C { uint x; }\n")
    (tmp_path / "contracts/notes.md").write_text("changed\n")
    assert build.checksum(tmp_path) == before
