"""`python -m gateway.demo` as its own process (what `make demo` runs), and the sample asset it upscales."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .processes import ROOT

SAMPLE = ROOT / "assets" / "sample_sprite.png"
STAGES = ("decode", "preupscale", "plan", "redraw", "blend", "seam_fix", "downscale", "encode")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo-output")
    run = subprocess.run(
        [sys.executable, "-m", "gateway.demo", "--output-dir", str(out)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    return out, run.stdout


def test_demo_writes_an_rgba_2x_result_that_keeps_transparency(demo: tuple[Path, str]) -> None:
    out, _ = demo
    result = Image.open(out / "sample_sprite_x2.png")
    assert result.mode == "RGBA"
    assert result.size == (256, 256)
    alpha = np.asarray(result)[..., 3]
    # The sprite's corners are transparent (checked below), so the 2x result's must be too.
    for corner in (alpha[:16, :16], alpha[:16, -16:], alpha[-16:, :16], alpha[-16:, -16:]):
        assert corner.max() == 0
    assert alpha.max() == 255  # the bottle itself is opaque


def test_demo_writes_a_side_by_side_comparison(demo: tuple[Path, str]) -> None:
    out, _ = demo
    comparison = Image.open(out / "sample_sprite_comparison.png")
    assert comparison.width > comparison.height
    assert comparison.width > 2 * 256
    assert not list(out.glob(".state-*")), "the stack's state folder is removed at the end"


def test_demo_prints_every_stage_and_the_outputs(demo: tuple[Path, str]) -> None:
    out, stdout = demo
    for stage in STAGES:  # a row of the timing table: the stage, then its seconds
        assert re.search(rf"\b{stage}\b\W+\d+\.\d\d\b", stdout), stage
    for line in ("job id", "seed", "tiles re-drawn", "wall time", "noise by design"):
        assert line in stdout
    assert "tiles re-drawn  21" in stdout  # 3x3 first-pass tiles and 12 seam-fix tiles
    assert str(out / "sample_sprite_comparison.png") in stdout


def test_sample_sprite_is_deterministic_rgba_with_transparent_corners(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        subprocess.run(
            [sys.executable, str(ROOT / "assets" / "make_sample.py"), str(tmp_path / name)],
            check=True,
            capture_output=True,
        )
    # Two runs give the same bytes; the committed file has the same pixels (compared as pixels so a
    # Pillow with another zlib, which compresses differently, does not fail the test).
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    drawn, committed = Image.open(tmp_path / "a.png"), Image.open(SAMPLE)
    assert (committed.mode, committed.size) == (drawn.mode, drawn.size) == ("RGBA", (128, 128))
    np.testing.assert_array_equal(np.asarray(committed), np.asarray(drawn))
    assert SAMPLE.stat().st_size < 40_000
    alpha = np.asarray(committed)[..., 3]
    assert alpha[:8, :8].max() == alpha[:8, -8:].max() == alpha[-4:, :8].max() == alpha[-4:, -8:].max() == 0
