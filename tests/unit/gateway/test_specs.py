"""Job-spec validation and resolution (`gateway.specs`): defaults, geometry, grids, seeds, LoRA rules,
and the dotted field every refusal names. Pure functions over hand-built messages; no servers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.specs import (
    Geometry,
    ImageInfo,
    SpecContext,
    derive_seed,
    geometry,
    job_kind,
    plan_grids,
    resolve_generate,
    resolve_upscale,
    tile_prompt,
    validate_job_spec,
    validate_settings,
)
from services.common.errors import (
    FailedPrecondition,
    ImageTooLarge,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from tilesmith.v1 import bridge_pb2, common_pb2, diffusion_pb2, gateway_pb2, tiling_pb2

FAST = settings(max_examples=100, deadline=None)

IMAGES = {
    "img": ImageInfo(1000, 600, has_alpha=False),
    "tiny": ImageInfo(100, 80, has_alpha=True),
    "strip": ImageInfo(1500, 50, has_alpha=False),
    "style": ImageInfo(512, 512, has_alpha=False),
}


def image_info(image_id: str) -> ImageInfo:
    if image_id not in IMAGES:
        raise NotFound(f"image {image_id!r} not found")
    return IMAGES[image_id]


def lora(
    name: str, lora_type: int = diffusion_pb2.LORA_TYPE_UNSPECIFIED, **metadata: float
) -> diffusion_pb2.LoraInfo:
    return diffusion_pb2.LoraInfo(
        name=name,
        base_architecture=common_pb2.BASE_ARCHITECTURE_SDXL,
        compatible=True,
        metadata=diffusion_pb2.LoraMetadata(type=lora_type, **metadata),
    )


LIBRARY = diffusion_pb2.ListLorasResponse(
    loras=[
        lora("char_a", diffusion_pb2.LORA_TYPE_CHARACTER),
        lora("detail_a", diffusion_pb2.LORA_TYPE_DETAIL),
        lora("detail_b", diffusion_pb2.LORA_TYPE_DETAIL),
        lora("detail_c", diffusion_pb2.LORA_TYPE_DETAIL),
        lora("plain"),
        diffusion_pb2.LoraInfo(
            name="sd15", base_architecture=common_pb2.BASE_ARCHITECTURE_SD15, compatible=False
        ),
        lora("style_a", diffusion_pb2.LORA_TYPE_STYLE, min_weight=-1.0, max_weight=1.5),
        lora("style_b", diffusion_pb2.LORA_TYPE_STYLE),
    ],
    rules=diffusion_pb2.LoraStackingRules(
        max_loras=5,
        type_limits=[
            diffusion_pb2.LoraTypeLimit(type=diffusion_pb2.LORA_TYPE_STYLE, max_count=1),
            diffusion_pb2.LoraTypeLimit(type=diffusion_pb2.LORA_TYPE_DETAIL, max_count=2),
            diffusion_pb2.LoraTypeLimit(type=diffusion_pb2.LORA_TYPE_CHARACTER, max_count=2),
        ],
        max_weight_sum=3.5,
    ),
)

CTX = SpecContext(
    image_info=image_info,
    loras=LIBRARY,
    upscalers=frozenset({"RealESRGAN_x4plus", "4x-UltraSharp"}),
    default_upscaler="RealESRGAN_x4plus",
    max_batch_size=4,
    default_batch_size=2,
    max_pixels=64_000_000,
    hosted_providers=frozenset({"fal", "replicate"}),
)


def context(**changes: Any) -> SpecContext:
    return dataclasses.replace(CTX, **changes)


def no_rng() -> int:
    raise AssertionError("no seed should be drawn")


def base(kind: str) -> gateway_pb2.JobSpec:
    """A valid spec of each kind, with its seed set where it has one."""
    match kind:
        case "upscale":
            return gateway_pb2.JobSpec(
                upscale=gateway_pb2.UpscaleSpec(image_id="img", settings=gateway_pb2.UpscaleSettings(seed=7))
            )
        case "generate":
            return gateway_pb2.JobSpec(
                generate=gateway_pb2.GenerateSpec(
                    prompt="a castle", settings=gateway_pb2.UpscaleSettings(seed=7)
                )
            )
        case "transform":
            return gateway_pb2.JobSpec(transform=gateway_pb2.TransformSpec(image_id="img", seed=7))
        case _:
            return gateway_pb2.JobSpec(
                reference=gateway_pb2.ReferenceSpec(reference_image_id="img", prompt="a knight")
            )


def upscale(**settings_fields: Any) -> gateway_pb2.UpscaleSpec:
    """An UPSCALE body on "img" (1000x600) with seed 7 and these settings."""
    return gateway_pb2.UpscaleSpec(
        image_id="img", settings=gateway_pb2.UpscaleSettings(seed=7, **settings_fields)
    )


def size(width: int, height: int) -> common_pb2.Size:
    return common_pb2.Size(width=width, height=height)


def target(**fields: Any) -> gateway_pb2.UpscaleTarget:
    return gateway_pb2.UpscaleTarget(**fields)


def refs(*pairs: tuple[str, float]) -> list[common_pb2.LoraRef]:
    return [common_pb2.LoraRef(name=name, weight=weight) for name, weight in pairs]


# ---------------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------------


def test_upscale_defaults_are_resolved_as_the_proto_says() -> None:
    s = resolve_upscale(upscale(), CTX).settings

    assert s.geometry == Geometry((1000, 600), (2000, 1200), (0, 0), (2000, 1200), (2000, 1200))
    assert (s.tile_size, s.overlap, s.feather) == ((1024, 1024), 128, "cosine")
    assert (s.prompt, s.negative_prompt) == ("", "")
    assert (s.strength, s.steps, s.cfg_scale, s.seed) == (0.35, 30, 7.0, 7)
    assert s.scheduler == diffusion_pb2.SCHEDULER_DPMPP_2M_SDE_KARRAS
    assert s.controlnet == diffusion_pb2.ControlNetSettings(
        enabled=True, scale=0.7, guidance_start=0.0, guidance_end=1.0
    )
    assert all(s.controlnet.HasField(name) for name in ("enabled", "scale", "guidance_start", "guidance_end"))
    assert (s.ip_adapter_image_id, s.ip_adapter_scale, s.loras) == (None, 0.6, ())
    assert (s.seam_fix, s.seam_strength, s.seam_band_width, s.seam_grid) == (False, 0.175, 128, None)
    assert s.color_fix == gateway_pb2.COLOR_FIX_MODE_NONE
    assert (s.auto_caption, s.caption_instruction, s.caption_system_prompt) == (False, "", "")
    assert (s.caption_use_context, s.caption_max_new_tokens) == (True, 96)
    assert (s.pre_upscaler, s.generation_size, s.batch_size, s.keep_intermediates) == (
        "lanczos",
        None,
        2,
        False,
    )
    # 2000x1200 with 1024 px tiles and 128 px overlap: 3 columns, 2 rows.
    assert (s.grid.cols, s.grid.rows, len(s.grid.tiles)) == (3, 2, 6)


def test_set_values_are_kept() -> None:
    spec = upscale(
        tile_size=size(512, 768),
        overlap=64,
        feather=tiling_pb2.FEATHER_MODE_LINEAR,
        prompt="oil painting",
        negative_prompt="blurry",
        strength=0.5,
        steps=20,
        cfg_scale=5.0,
        scheduler=diffusion_pb2.SCHEDULER_EULER,
        controlnet=diffusion_pb2.ControlNetSettings(enabled=False, scale=1.0, guidance_start=0.25),
        ip_adapter=gateway_pb2.IpAdapterSettings(image_id="style", scale=1.0),
        loras=refs(("style_a", 0.75), ("plain", -1.0)),
        seam_fix=gateway_pb2.SeamFixSettings(enabled=True, strength=0.25, band_width=48),
        color_fix=gateway_pb2.COLOR_FIX_MODE_WAVELET,
        caption=gateway_pb2.CaptionSettings(
            auto_caption=True,
            instruction="say it",
            system_prompt="be brief",
            use_context=False,
            max_new_tokens=32,
        ),
        pre_upscaler="4x-UltraSharp",
        generation_size=1536,
        batch_size=4,
        keep_intermediates=True,
    )
    s = resolve_upscale(spec, CTX).settings

    assert (s.tile_size, s.overlap, s.feather) == ((512, 768), 64, "linear")
    assert (s.prompt, s.negative_prompt, s.steps, s.cfg_scale) == ("oil painting", "blurry", 20, 5.0)
    assert s.strength == pytest.approx(0.5)
    assert s.scheduler == diffusion_pb2.SCHEDULER_EULER
    assert s.controlnet.enabled is False
    assert s.controlnet.guidance_start == 0.25
    assert s.controlnet.guidance_end == 1.0
    assert (s.ip_adapter_image_id, s.ip_adapter_scale) == ("style", 1.0)
    assert s.loras == (("style_a", 0.75), ("plain", -1.0))
    assert (s.seam_fix, s.seam_strength, s.seam_band_width) == (True, 0.25, 48)
    assert s.seam_grid is not None
    assert s.seam_grid.offset
    assert s.color_fix == gateway_pb2.COLOR_FIX_MODE_WAVELET
    assert (s.auto_caption, s.caption_instruction, s.caption_system_prompt) == (True, "say it", "be brief")
    assert (s.caption_use_context, s.caption_max_new_tokens) == (False, 32)
    assert (s.pre_upscaler, s.generation_size, s.batch_size, s.keep_intermediates) == (
        "4x-UltraSharp",
        1536,
        4,
        True,
    )


@pytest.mark.parametrize(
    ("default_batch_size", "max_batch_size", "expected"), [(2, 4, 2), (8, 4, 4), (1, 1, 1)]
)
def test_default_batch_size_is_the_setting_clamped_to_the_replicas_max(
    default_batch_size: int, max_batch_size: int, expected: int
) -> None:
    ctx = context(default_batch_size=default_batch_size, max_batch_size=max_batch_size)
    assert resolve_upscale(upscale(), ctx).settings.batch_size == expected


@pytest.mark.parametrize(
    ("settings_fields", "overlap", "band"),
    [
        ({}, 128, 128),
        ({"tile_size": size(64, 128)}, 32, 32),  # default overlap capped at half the smaller side
        ({"overlap": 0}, 0, 2),  # band at least 2
        ({"overlap": 1}, 1, 2),
        ({"overlap": 40, "seam_fix": gateway_pb2.SeamFixSettings(band_width=100)}, 40, 100),
    ],
)
def test_overlap_and_seam_band_defaults(settings_fields: dict, overlap: int, band: int) -> None:
    s = resolve_upscale(upscale(**settings_fields), CTX).settings
    assert (s.overlap, s.seam_band_width) == (overlap, band)


def test_seam_strength_defaults_to_half_the_strength() -> None:
    s = resolve_upscale(upscale(strength=0.5), CTX).settings
    assert s.seam_strength == pytest.approx(0.25)


def test_generate_resolves_its_base_image_and_enhancement() -> None:
    spec = gateway_pb2.GenerateSpec(
        prompt="a castle", negative_prompt="fog", settings=gateway_pb2.UpscaleSettings(seed=3)
    )
    resolved = resolve_generate(spec, CTX)

    assert (resolved.prompt, resolved.negative_prompt) == ("a castle", "fog")
    assert (resolved.base_size, resolved.base_steps, resolved.base_cfg_scale) == ((1024, 1024), 30, 7.0)
    up = resolved.upscale
    assert up.image_id == ""
    assert (up.settings.prompt, up.settings.negative_prompt) == ("a castle", "fog")
    assert up.settings.pre_upscaler == "RealESRGAN_x4plus"
    assert up.settings.geometry.input_size == (1024, 1024)
    assert up.settings.geometry.working_size == (2048, 2048)
    assert up.redraw_tiles == tuple(range(len(up.settings.grid.tiles)))
    assert (up.tile_prompts, up.regions) == ({}, ())


def test_generate_settings_prompts_and_sizes_override_the_defaults() -> None:
    spec = gateway_pb2.GenerateSpec(
        prompt="a castle",
        base_size=size(1920, 1024),
        base_steps=40,
        base_cfg_scale=4.0,
        settings=gateway_pb2.UpscaleSettings(
            seed=3,
            prompt="detailed stone",
            pre_upscaler="lanczos",
            target=target(size=size(3840, 2160)),
            supersampling=2.0,
        ),
    )
    resolved = resolve_generate(spec, CTX)

    assert (resolved.base_size, resolved.base_steps, resolved.base_cfg_scale) == ((1920, 1024), 40, 4.0)
    assert resolved.upscale.settings.prompt == "detailed stone"
    assert resolved.upscale.settings.negative_prompt == ""
    assert resolved.upscale.settings.pre_upscaler == "lanczos"
    # The proto's example: 1920x1024 -> 7680x4320 working -> 3840x2160.
    assert resolved.upscale.settings.geometry.working_size == (7680, 4320)
    assert resolved.upscale.settings.geometry.output_size == (3840, 2160)


# ---------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_fields", "input_size", "scaled", "crop", "working", "output"),
    [
        pytest.param({}, (1000, 600), (2000, 1200), (0, 0), (2000, 1200), (2000, 1200), id="default-2x"),
        pytest.param(
            {"target": target(scale=1.0)}, (333, 77), (333, 77), (0, 0), (333, 77), (333, 77), id="1x"
        ),
        pytest.param(
            {"target": target(scale=1.5)},
            (1001, 603),
            (1502, 904),
            (0, 0),
            (1502, 904),
            (1502, 904),
            id="round",
        ),
        pytest.param(
            {"target": target(size=size(1920, 1080))},
            (1000, 600),
            (1920, 1080),
            (0, 0),
            (1920, 1080),
            (1920, 1080),
            id="stretch",
        ),
        pytest.param(
            {"target": target(size=size(1920, 1080), fit=gateway_pb2.TARGET_FIT_STRETCH)},
            (1000, 600),
            (1920, 1080),
            (0, 0),
            (1920, 1080),
            (1920, 1080),
            id="stretch-explicit",
        ),
        pytest.param(
            {"target": target(size=size(1920, 1080), fit=gateway_pb2.TARGET_FIT_COVER)},
            (1000, 600),
            (1920, 1152),
            (0, 36),
            (1920, 1080),
            (1920, 1080),
            id="cover",
        ),
        pytest.param(
            {"target": target(size=size(1000, 1000), fit=gateway_pb2.TARGET_FIT_COVER)},
            (1000, 600),
            (1667, 1000),
            (333, 0),
            (1000, 1000),
            (1000, 1000),
            id="cover-width-crop",
        ),
        pytest.param(
            {"target": target(size=size(1920, 1080), fit=gateway_pb2.TARGET_FIT_COVER), "supersampling": 1.5},
            (1000, 600),
            (2880, 1728),
            (0, 54),
            (2880, 1620),
            (1920, 1080),
            id="cover-supersampled",
        ),
        pytest.param(
            {"target": target(size=size(1920, 1080), fit=gateway_pb2.TARGET_FIT_CONTAIN)},
            (1000, 600),
            (1800, 1080),
            (0, 0),
            (1800, 1080),
            (1800, 1080),
            id="contain",
        ),
        pytest.param(
            {"target": target(size=size(100, 100), fit=gateway_pb2.TARGET_FIT_CONTAIN)},
            (10000, 10),
            (100, 1),
            (0, 0),
            (100, 1),
            (100, 1),
            id="contain-at-least-1px",
        ),
        pytest.param(
            {"target": target(preset=gateway_pb2.RESOLUTION_PRESET_2K)},
            (1000, 600),
            (2048, 1229),
            (0, 0),
            (2048, 1229),
            (2048, 1229),
            id="2k",
        ),
        pytest.param(
            {"target": target(preset=gateway_pb2.RESOLUTION_PRESET_4K)},
            (600, 1000),
            (2304, 3840),
            (0, 0),
            (2304, 3840),
            (2304, 3840),
            id="4k-portrait",
        ),
        pytest.param(
            {"target": target(preset=gateway_pb2.RESOLUTION_PRESET_8K)},
            (1920, 1080),
            (7680, 4320),
            (0, 0),
            (7680, 4320),
            (7680, 4320),
            id="8k",
        ),
        pytest.param(
            {"target": target(scale=2.0), "supersampling": 2.0},
            (1000, 600),
            (4000, 2400),
            (0, 0),
            (4000, 2400),
            (2000, 1200),
            id="supersampled",
        ),
        pytest.param(
            {"target": target(scale=1.0), "supersampling": 1.25},
            (1001, 999),
            (1251, 1249),
            (0, 0),
            (1251, 1249),
            (1001, 999),
            id="supersampled-rounding",
        ),
    ],
)
def test_geometry(
    settings_fields: dict,
    input_size: tuple[int, int],
    scaled: tuple[int, int],
    crop: tuple[int, int],
    working: tuple[int, int],
    output: tuple[int, int],
) -> None:
    geo = geometry(gateway_pb2.UpscaleSettings(**settings_fields), input_size)
    assert geo == Geometry(input_size, scaled, crop, working, output)


@pytest.mark.parametrize(
    ("settings_fields", "blamed"),
    [
        ({}, "upscale.settings.target"),
        ({"target": target(scale=1.0), "supersampling": 2.0}, "upscale.settings.supersampling"),
    ],
)
def test_working_image_over_the_pixel_cap_is_too_large(settings_fields: dict, blamed: str) -> None:
    ctx = context(max_pixels=1_000_000)
    spec = gateway_pb2.JobSpec(upscale=upscale(**settings_fields))

    with pytest.raises(ImageTooLarge) as info:
        validate_job_spec(spec, ctx)

    message = str(info.value)
    assert message.startswith(f"{blamed}: ")
    assert "2000x1200" in message
    assert "1000000" in message


def test_working_image_wider_than_65535_is_too_large() -> None:
    settings_pb = gateway_pb2.UpscaleSettings(target=target(size=size(65535, 1)), supersampling=2.0)
    with pytest.raises(ImageTooLarge, match=r"upscale\.settings\.supersampling: .*131070x2"):
        geometry(settings_pb, (100, 100))


def test_geometry_without_a_cap_checks_only_the_side_limit() -> None:
    settings_pb = gateway_pb2.UpscaleSettings(target=target(scale=16.0))
    assert geometry(settings_pb, (4000, 4000)).working_size == (64000, 64000)
    with pytest.raises(ImageTooLarge):
        geometry(settings_pb, (4000, 4000), max_pixels=64_000_000)


def test_cover_maps_input_rects_through_the_crop() -> None:
    geo = geometry(
        gateway_pb2.UpscaleSettings(target=target(size=size(1920, 1080), fit=gateway_pb2.TARGET_FIT_COVER)),
        (1000, 600),
    )  # scale 1.92, crop (0, 36)
    assert geo.input_rect_to_working(0, 0, 1000, 600) == (0, 0, 1920, 1080)
    assert geo.input_rect_to_working(100, 100, 10, 10) == (192, 156, 20, 20)
    assert geo.input_rect_to_working(0, 0, 10, 10) == (0, 0, 20, 0)  # cropped away
    assert geo.working_rect_to_input(0, 0, 1920, 1080) == (0, 18, 1000, 564)  # rows 18.75..581.25
    assert geo.working_rect_to_input(0, 0, 1, 1) == (0, 18, 1, 2)  # rows 18.75..19.27


rects = st.tuples(st.integers(1, 400), st.integers(1, 400)).flatmap(
    lambda wh: st.tuples(
        st.just(wh),
        st.integers(0, wh[0] - 1).flatmap(lambda x: st.tuples(st.just(x), st.integers(1, wh[0] - x))),
        st.integers(0, wh[1] - 1).flatmap(lambda y: st.tuples(st.just(y), st.integers(1, wh[1] - y))),
    )
)
any_target = st.one_of(
    st.builds(lambda s: target(scale=s), st.floats(1.0, 16.0)),
    st.builds(
        lambda w, h, fit: target(size=size(w, h), fit=fit),
        st.integers(1, 900),
        st.integers(1, 900),
        st.sampled_from(list(gateway_pb2.TargetFit.values())),
    ),
    st.builds(lambda p: target(preset=p), st.sampled_from([1, 2, 3])),
)


@FAST
@given(rects, st.floats(1.0, 4.0), st.floats(1.0, 2.0))
def test_upscaled_input_rects_round_trip_within_one_pixel(
    rect: tuple, scale: float, supersampling: float
) -> None:
    (width, height), (x, w), (y, h) = rect
    geo = geometry(
        gateway_pb2.UpscaleSettings(target=target(scale=scale), supersampling=supersampling), (width, height)
    )
    wx, wy, ww, wh = geo.input_rect_to_working(x, y, w, h)
    assert 0 <= wx < wx + ww <= geo.working_size[0]
    assert 0 <= wy < wy + wh <= geo.working_size[1]

    bx, by, bw, bh = geo.working_rect_to_input(wx, wy, ww, wh)
    assert x - 1 <= bx <= x
    assert y - 1 <= by <= y
    assert x + w <= bx + bw <= x + w + 1
    assert y + h <= by + bh <= y + h + 1


@FAST
@given(rects, any_target, st.floats(1.0, 2.0))
def test_mapped_rects_stay_inside_their_images(rect: tuple, target_pb: Any, supersampling: float) -> None:
    (width, height), (x, w), (y, h) = rect
    settings_pb = gateway_pb2.UpscaleSettings(target=target_pb, supersampling=supersampling)
    geo = geometry(settings_pb, (width, height))
    (sw, sh), (cx, cy), (ww, wh) = geo.scaled_size, geo.crop, geo.working_size
    # The working image is the output times the supersampling (as stored: float32), cut evenly out of
    # the scaled image.
    ss = Fraction(settings_pb.supersampling)
    assert geo.working_size == tuple(max(1, round(side * ss)) for side in geo.output_size)
    assert sw >= ww
    assert sh >= wh
    assert abs((sw - ww - cx) - cx) <= 1
    assert abs((sh - wh - cy) - cy) <= 1

    wx, wy, rw, rh = geo.input_rect_to_working(x, y, w, h)
    assert 0 <= wx <= wx + rw <= ww
    assert 0 <= wy <= wy + rh <= wh

    # A working rect maps back inside the input and at least 1x1; the whole working image maps to a
    # rect that covers what the input contributes.
    ix, iy, iw, ih = geo.working_rect_to_input(min(x, ww - 1), min(y, wh - 1), 1, 1)
    assert 0 <= ix < ix + iw <= width
    assert 0 <= iy < iy + ih <= height
    if target_pb.fit != gateway_pb2.TARGET_FIT_COVER:
        assert geo.working_rect_to_input(0, 0, ww, wh) == (0, 0, width, height)


# ---------------------------------------------------------------------------------------------------
# Grids and tiles
# ---------------------------------------------------------------------------------------------------


def test_image_smaller_than_a_tile_is_one_tile_and_has_no_seam_grid() -> None:
    spec = upscale(seam_fix=gateway_pb2.SeamFixSettings(enabled=True))
    spec.image_id = "tiny"
    s = resolve_upscale(spec, CTX).settings

    assert s.geometry.working_size == (200, 160)
    assert len(s.grid.tiles) == 1
    assert (s.grid.tiles[0].width, s.grid.tiles[0].height) == (200, 160)
    assert s.seam_grid is None


def test_strip_thinner_than_a_tile_keeps_the_requested_overlap_along_its_length() -> None:
    spec = upscale(target=target(scale=2.0), overlap=256)
    spec.image_id = "strip"  # working 3000x100: tiles 1024x100
    s = resolve_upscale(spec, CTX).settings

    assert (s.grid.rows, s.grid.cols) == (1, 4)
    assert s.grid.overlap == 256
    assert {(t.width, t.height) for t in s.grid.tiles} == {(1024, 100)}


@pytest.mark.parametrize(("enabled", "has_seam_grid"), [(True, True), (False, False)])
def test_seam_grid_follows_seam_fix(enabled: bool, has_seam_grid: bool) -> None:
    s = resolve_upscale(upscale(seam_fix=gateway_pb2.SeamFixSettings(enabled=enabled)), CTX).settings
    assert (s.seam_grid is not None) is has_seam_grid


def test_plan_grids_matches_the_job() -> None:
    spec = upscale(tile_size=size(512, 512), overlap=32, seam_fix=gateway_pb2.SeamFixSettings(enabled=True))
    resolved = resolve_upscale(spec, CTX).settings
    assert plan_grids(spec.settings, resolved.geometry) == (resolved.grid, resolved.seam_grid)


@pytest.mark.parametrize(
    ("selected", "regions", "expected"),
    [
        ([], 0, (0, 1, 2, 3, 4, 5)),
        ([4, 0, 2], 0, (0, 2, 4)),
        ([], 2, ()),
        ([5, 1], 1, (1, 5)),
    ],
)
def test_redraw_tiles(selected: list[int], regions: int, expected: tuple[int, ...]) -> None:
    spec = upscale()
    spec.selected_tiles.extend(selected)
    for _ in range(regions):
        spec.regions.add(rect=common_pb2.Rect(x=10, y=10, width=50, height=50))
    assert resolve_upscale(spec, CTX).redraw_tiles == expected


def test_tile_prompts_keep_non_blank_values_only() -> None:
    spec = upscale()
    spec.tile_prompts.update({5: "tower", 0: "", 2: "  ", 99: ""})
    assert resolve_upscale(spec, CTX).tile_prompts == {5: "tower"}


def test_regions_resolve_their_defaults() -> None:
    spec = upscale(strength=0.5)
    spec.regions.add(rect=common_pb2.Rect(x=10, y=20, width=30, height=40), prompt="a face")
    spec.regions.add(rect=common_pb2.Rect(x=0, y=0, width=1000, height=600), padding=8, strength=0.25)
    spec.regions.add(rect=common_pb2.Rect(x=1, y=1, width=1, height=1), padding=0)
    first, second, third = resolve_upscale(spec, CTX).regions

    assert (first.index, first.rect, first.prompt, first.padding, first.feather) == (
        0,
        (10, 20, 30, 40),
        "a face",
        32,
        16,
    )
    assert first.strength == pytest.approx(0.5)
    assert (second.index, second.padding, second.feather, second.strength) == (1, 8, 8, 0.25)
    assert (third.padding, third.feather) == (0, 0)


def test_region_cropped_away_by_cover_is_refused() -> None:
    spec = upscale(target=target(size=size(1920, 1080), fit=gateway_pb2.TARGET_FIT_COVER))
    spec.regions.add(rect=common_pb2.Rect(x=0, y=0, width=100, height=10))  # input rows 0..17 are cropped
    with pytest.raises(InvalidArgument, match="COVER crops away") as info:
        resolve_upscale(spec, CTX)
    assert info.value.field == "upscale.regions[0].rect"


# ---------------------------------------------------------------------------------------------------
# Every refusal names its field
# ---------------------------------------------------------------------------------------------------

Mutation = Callable[[gateway_pb2.JobSpec], Any]


def put(path: str, value: Any) -> Mutation:
    """Set the field at a dotted path from the JobSpec."""

    def mutate(spec: gateway_pb2.JobSpec) -> None:
        *parents, leaf = path.split(".")
        message = spec
        for name in parents:
            message = getattr(message, name)
        setattr(message, leaf, value)

    return mutate


def both(*mutations: Mutation) -> Mutation:
    return lambda spec: [mutate(spec) for mutate in mutations]


def region(**fields: Any) -> Mutation:
    fields.setdefault("rect", common_pb2.Rect(x=0, y=0, width=10, height=10))
    return lambda spec: spec.upscale.regions.add(**fields)


S = "upscale.settings"
LONG = "x" * 2001
NAN = float("nan")
INVALID_CASES: list[tuple[str, Mutation, str]] = [
    # The spec itself.
    ("upscale", put("label", "x" * 201), "label"),
    ("upscale", put("upscale.image_id", ""), "upscale.image_id"),
    # Target and supersampling.
    ("upscale", put(f"{S}.target.scale", 0.5), f"{S}.target.scale"),
    ("upscale", put(f"{S}.target.scale", 16.5), f"{S}.target.scale"),
    ("upscale", put(f"{S}.target.scale", NAN), f"{S}.target.scale"),
    ("upscale", put(f"{S}.target.size.height", 100), f"{S}.target.size.width"),
    (
        "upscale",
        both(put(f"{S}.target.size.width", 100), put(f"{S}.target.size.height", 70000)),
        f"{S}.target.size.height",
    ),
    ("upscale", put(f"{S}.target.preset", 0), f"{S}.target.preset"),
    ("upscale", put(f"{S}.target.preset", 9), f"{S}.target.preset"),
    ("upscale", put(f"{S}.target.fit", 9), f"{S}.target.fit"),
    ("upscale", put(f"{S}.target.fit", gateway_pb2.TARGET_FIT_COVER), f"{S}.target.fit"),
    ("upscale", both(put(f"{S}.target.scale", 2.0), put(f"{S}.target.fit", 3)), f"{S}.target.fit"),
    ("upscale", put(f"{S}.supersampling", 0.5), f"{S}.supersampling"),
    ("upscale", put(f"{S}.supersampling", 4.5), f"{S}.supersampling"),
    # Tiles.
    ("upscale", put(f"{S}.tile_size.height", 1024), f"{S}.tile_size.width"),
    (
        "upscale",
        both(put(f"{S}.tile_size.width", 1001), put(f"{S}.tile_size.height", 1024)),
        f"{S}.tile_size.width",
    ),
    (
        "upscale",
        both(put(f"{S}.tile_size.width", 4104), put(f"{S}.tile_size.height", 1024)),
        f"{S}.tile_size.width",
    ),
    (
        "upscale",
        both(put(f"{S}.tile_size.width", 1024), put(f"{S}.tile_size.height", 56)),
        f"{S}.tile_size.height",
    ),
    ("upscale", put(f"{S}.overlap", 513), f"{S}.overlap"),
    (
        "upscale",
        both(put(f"{S}.tile_size.width", 256), put(f"{S}.tile_size.height", 128), put(f"{S}.overlap", 65)),
        f"{S}.overlap",
    ),
    ("upscale", put(f"{S}.feather", 7), f"{S}.feather"),
    # Sampling.
    ("upscale", put(f"{S}.prompt", LONG), f"{S}.prompt"),
    ("upscale", put(f"{S}.negative_prompt", LONG), f"{S}.negative_prompt"),
    ("upscale", put(f"{S}.strength", 0.0), f"{S}.strength"),
    ("upscale", put(f"{S}.strength", 1.01), f"{S}.strength"),
    ("upscale", put(f"{S}.strength", NAN), f"{S}.strength"),
    ("upscale", put(f"{S}.steps", 0), f"{S}.steps"),
    ("upscale", put(f"{S}.steps", 151), f"{S}.steps"),
    ("upscale", put(f"{S}.cfg_scale", -0.5), f"{S}.cfg_scale"),
    ("upscale", put(f"{S}.cfg_scale", 30.5), f"{S}.cfg_scale"),
    ("upscale", put(f"{S}.seed", -2), f"{S}.seed"),
    ("upscale", put(f"{S}.scheduler", 99), f"{S}.scheduler"),
    ("upscale", put(f"{S}.controlnet.scale", 2.5), f"{S}.controlnet.scale"),
    ("upscale", put(f"{S}.controlnet.guidance_start", -0.1), f"{S}.controlnet.guidance_start"),
    ("upscale", put(f"{S}.controlnet.guidance_end", 1.5), f"{S}.controlnet.guidance_end"),
    ("upscale", put(f"{S}.controlnet.guidance_start", 1.0), f"{S}.controlnet.guidance_start"),
    ("upscale", put(f"{S}.controlnet.guidance_end", 0.0), f"{S}.controlnet.guidance_end"),
    (
        "upscale",
        both(put(f"{S}.controlnet.guidance_start", 0.5), put(f"{S}.controlnet.guidance_end", 0.5)),
        f"{S}.controlnet.guidance_start",
    ),
    (
        "upscale",
        both(put(f"{S}.ip_adapter.image_id", "style"), put(f"{S}.ip_adapter.scale", 2.5)),
        f"{S}.ip_adapter.scale",
    ),
    # Seam fix, colour fix, captions.
    ("upscale", put(f"{S}.seam_fix.strength", 0.0), f"{S}.seam_fix.strength"),
    ("upscale", put(f"{S}.seam_fix.band_width", 1), f"{S}.seam_fix.band_width"),
    ("upscale", put(f"{S}.seam_fix.band_width", 1025), f"{S}.seam_fix.band_width"),
    ("upscale", put(f"{S}.color_fix", 9), f"{S}.color_fix"),
    ("upscale", put(f"{S}.caption.instruction", "x" * 4001), f"{S}.caption.instruction"),
    ("upscale", put(f"{S}.caption.system_prompt", "x" * 4001), f"{S}.caption.system_prompt"),
    ("upscale", put(f"{S}.caption.max_new_tokens", 0), f"{S}.caption.max_new_tokens"),
    ("upscale", put(f"{S}.caption.max_new_tokens", 513), f"{S}.caption.max_new_tokens"),
    # Generation size and batches.
    ("upscale", put(f"{S}.generation_size", 63), f"{S}.generation_size"),
    ("upscale", put(f"{S}.generation_size", 4097), f"{S}.generation_size"),
    ("upscale", put(f"{S}.batch_size", 0), f"{S}.batch_size"),
    ("upscale", put(f"{S}.batch_size", 5), f"{S}.batch_size"),
    # Tile prompts, regions, selected tiles (the default plan has 6 tiles).
    ("upscale", lambda s: s.upscale.tile_prompts.update({6: "roof"}), "upscale.tile_prompts[6]"),
    ("upscale", lambda s: s.upscale.tile_prompts.update({2: LONG}), "upscale.tile_prompts[2]"),
    ("upscale", both(*[region()] * 65), "upscale.regions"),
    ("upscale", region(rect=common_pb2.Rect(x=0, y=0, width=0, height=10)), "upscale.regions[0].rect"),
    ("upscale", lambda s: s.upscale.regions.add(), "upscale.regions[0].rect"),
    (
        "upscale",
        both(region(), region(rect=common_pb2.Rect(x=990, y=0, width=11, height=10))),
        "upscale.regions[1].rect",
    ),
    (
        "upscale",
        both(region(), region(), region(rect=common_pb2.Rect(x=0, y=500, width=10, height=101))),
        "upscale.regions[2].rect",
    ),
    ("upscale", region(prompt=LONG), "upscale.regions[0].prompt"),
    ("upscale", region(padding=1025), "upscale.regions[0].padding"),
    ("upscale", region(feather=33), "upscale.regions[0].feather"),
    ("upscale", region(padding=8, feather=9), "upscale.regions[0].feather"),
    ("upscale", region(strength=0.0), "upscale.regions[0].strength"),
    ("upscale", lambda s: s.upscale.selected_tiles.extend([0, 6]), "upscale.selected_tiles[1]"),
    ("upscale", lambda s: s.upscale.selected_tiles.extend([3, 1, 3]), "upscale.selected_tiles[2]"),
    # LoRAs.
    (
        "upscale",
        lambda s: s.upscale.settings.loras.extend(refs(("plain", 1.0), ("style_a", 1.6))),
        f"{S}.loras[1].weight",
    ),
    ("upscale", lambda s: s.upscale.settings.loras.extend(refs(("plain", 2.5))), f"{S}.loras[0].weight"),
    ("upscale", lambda s: s.upscale.settings.loras.extend(refs(("plain", NAN))), f"{S}.loras[0].weight"),
    (
        "upscale",
        lambda s: s.upscale.settings.loras.extend(refs(("plain", 1.0), ("plain", 0.5))),
        f"{S}.loras[1].name",
    ),
    ("upscale", lambda s: s.upscale.settings.loras.extend(refs(("", 1.0))), f"{S}.loras[0].name"),
    # GENERATE.
    ("generate", put("generate.prompt", ""), "generate.prompt"),
    ("generate", put("generate.prompt", "   "), "generate.prompt"),
    ("generate", put("generate.prompt", LONG), "generate.prompt"),
    ("generate", put("generate.negative_prompt", LONG), "generate.negative_prompt"),
    (
        "generate",
        both(put("generate.base_size.width", 1001), put("generate.base_size.height", 1024)),
        "generate.base_size.width",
    ),
    (
        "generate",
        both(put("generate.base_size.width", 1024), put("generate.base_size.height", 32)),
        "generate.base_size.height",
    ),
    ("generate", put("generate.base_steps", 0), "generate.base_steps"),
    ("generate", put("generate.base_steps", 151), "generate.base_steps"),
    ("generate", put("generate.base_cfg_scale", 31.0), "generate.base_cfg_scale"),
    ("generate", put("generate.settings.strength", 2.0), "generate.settings.strength"),
    ("generate", put("generate.settings.batch_size", 9), "generate.settings.batch_size"),
    (
        "generate",
        lambda s: s.generate.settings.loras.extend(refs(("style_a", -1.5))),
        "generate.settings.loras[0].weight",
    ),
    # TRANSFORM.
    ("transform", put("transform.image_id", ""), "transform.image_id"),
    ("transform", put("transform.mode", 9), "transform.mode"),
    ("transform", put("transform.reference_strength", 1.5), "transform.reference_strength"),
    ("transform", put("transform.prompt", LONG), "transform.prompt"),
    ("transform", put("transform.negative_prompt", LONG), "transform.negative_prompt"),
    ("transform", put("transform.steps", 0), "transform.steps"),
    ("transform", put("transform.cfg_scale", 31.0), "transform.cfg_scale"),
    ("transform", put("transform.seed", -3), "transform.seed"),
    ("transform", put("transform.scheduler", 42), "transform.scheduler"),
    (
        "transform",
        both(put("transform.mode", 2), put("transform.negative_prompt", "ugly")),
        "transform.negative_prompt",
    ),
    ("transform", both(put("transform.mode", 2), put("transform.steps", 15)), "transform.steps"),
    ("transform", both(put("transform.mode", 2), put("transform.cfg_scale", 1.0)), "transform.cfg_scale"),
    (
        "transform",
        both(put("transform.mode", 2), put("transform.enhance_prompt", False)),
        "transform.enhance_prompt",
    ),
    ("transform", lambda s: s.transform.provider_chain.extend(["nope"]), "transform.provider_chain[0]"),
    (
        "transform",
        lambda s: s.transform.provider_chain.extend(["internal", "fal", "internal"]),
        "transform.provider_chain[2]",
    ),
    ("transform", lambda s: s.transform.loras.extend(refs(("plain", 3.0))), "transform.loras[0].weight"),
    (
        "transform",
        both(
            lambda s: s.transform.loras.extend(refs(("plain", 1.0))),
            lambda s: s.transform.provider_chain.append("fal"),
        ),
        "transform.loras",
    ),
    # REFERENCE.
    ("reference", put("reference.reference_image_id", ""), "reference.reference_image_id"),
    ("reference", put("reference.prompt", ""), "reference.prompt"),
    ("reference", put("reference.prompt", "x" * 4001), "reference.prompt"),
    ("reference", put("reference.attributes.hair_color", "x" * 101), "reference.attributes.hair_color"),
    ("reference", put("reference.attributes.age", "x" * 101), "reference.attributes.age"),
    (
        "reference",
        lambda s: s.reference.attributes.extra.update({str(i): "x" for i in range(17)}),
        "reference.attributes.extra",
    ),
    (
        "reference",
        lambda s: s.reference.loras.add(url="http://example.com/a.safetensors"),
        "reference.loras[0].url",
    ),
    (
        "reference",
        lambda s: s.reference.loras.add(url="https://example.com/a.safetensors", weight=4.5),
        "reference.loras[0].weight",
    ),
    (
        "reference",
        lambda s: [s.reference.loras.add(url="https://h/x.safetensors") for _ in range(6)],
        "reference.loras",
    ),
    (
        "reference",
        lambda s: s.reference.loras.add(url="https://h/x", trigger_words=["x"] * 33),
        "reference.loras[0].trigger_words",
    ),
    ("reference", put("reference.mode", bridge_pb2.HOSTED_GENERATION_MODE_TEXT_TO_IMAGE), "reference.mode"),
    ("reference", put("reference.mode", 9), "reference.mode"),
    (
        "reference",
        both(put("reference.size.width", 255), put("reference.size.height", 512)),
        "reference.size.width",
    ),
    (
        "reference",
        both(put("reference.size.width", 512), put("reference.size.height", 4097)),
        "reference.size.height",
    ),
    ("reference", put("reference.steps", 51), "reference.steps"),
    ("reference", put("reference.guidance_scale", 20.5), "reference.guidance_scale"),
    ("reference", lambda s: s.reference.provider_chain.append("internal"), "reference.provider_chain[0]"),
    ("reference", lambda s: s.reference.provider_chain.extend(["fal", "zai"]), "reference.provider_chain[1]"),
]


@pytest.mark.parametrize(("kind", "mutate", "field"), INVALID_CASES, ids=[case[2] for case in INVALID_CASES])
def test_invalid_values_name_their_field(kind: str, mutate: Mutation, field: str) -> None:
    spec = base(kind)
    mutate(spec)
    with pytest.raises(InvalidArgument) as info:
        validate_job_spec(spec, CTX, rng=lambda: 1)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (put(f"{S}.strength", 1.5), "must be > 0 and <= 1, got 1.5"),
        (put(f"{S}.steps", 200), "must be in 1..150, got 200"),
        (put(f"{S}.overlap", 600), "must be in 0..512 (half the smaller tile side), got 600"),
        (put(f"{S}.seed", -9), "must be -1 (random) or in 0..9223372036854775807, got -9"),
        (put(f"{S}.prompt", LONG), "must be at most 2000 characters, got 2001"),
        (put(f"{S}.scheduler", 99), "99 is not a Scheduler value"),
        (region(rect=common_pb2.Rect(x=995, y=0, width=10, height=10)), "inside the 1000x600 input image"),
        (lambda s: s.upscale.selected_tiles.append(6), "tiles are 0..5"),
    ],
)
def test_messages_say_what_is_allowed_and_what_came(mutate: Mutation, message: str) -> None:
    spec = base("upscale")
    mutate(spec)
    with pytest.raises(
        InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        validate_job_spec(spec, CTX)


def test_a_spec_without_a_kind_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_job_spec(gateway_pb2.JobSpec(label="nothing"), CTX)
    assert info.value.field == "spec"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (put("upscale.image_id", "gone"), "upscale.image_id: image 'gone' not found"),
        (put(f"{S}.ip_adapter.image_id", "gone"), f"{S}.ip_adapter.image_id: image 'gone' not found"),
        (put(f"{S}.pre_upscaler", "4x-Nope"), f"{S}.pre_upscaler: no upscaler named '4x-Nope'"),
        (
            lambda s: s.upscale.settings.loras.extend(refs(("plain", 1.0), ("nope", 1.0))),
            f"{S}.loras[1].name: no LoRA named 'nope'",
        ),
    ],
)
def test_unknown_names_are_not_found(mutate: Mutation, message: str) -> None:
    spec = base("upscale")
    mutate(spec)
    with pytest.raises(NotFound) as info:
        validate_job_spec(spec, CTX)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("pre_upscaler", ["", "lanczos", "RealESRGAN_x4plus", "4x-UltraSharp"])
def test_known_pre_upscalers_pass(pre_upscaler: str) -> None:
    resolved = resolve_upscale(upscale(pre_upscaler=pre_upscaler), CTX)
    assert resolved.settings.pre_upscaler == (pre_upscaler or "lanczos")


def test_unknown_transform_and_reference_images_are_not_found() -> None:
    transform, reference = base("transform"), base("reference")
    transform.transform.image_id = "gone"
    reference.reference.reference_image_id = "gone"
    with pytest.raises(NotFound, match=r"^transform\.image_id: image 'gone' not found"):
        validate_job_spec(transform, CTX)
    with pytest.raises(NotFound, match=r"^reference\.reference_image_id: image 'gone' not found"):
        validate_job_spec(reference, CTX)


@pytest.mark.parametrize("kind", ["upscale", "generate", "transform", "reference"])
def test_valid_specs_of_every_kind_pass(kind: str) -> None:
    spec = base(kind)
    spec.label = "x" * 200
    assert validate_job_spec(spec, CTX).WhichOneof("spec") == kind


def test_full_transform_and_reference_specs_pass() -> None:
    transform = gateway_pb2.JobSpec(
        transform=gateway_pb2.TransformSpec(
            image_id="img",
            mode=gateway_pb2.TRANSFORM_MODE_COPY,
            reference_strength=1.0,
            prompt="watercolour",
            loras=refs(("style_a", 1.0)),
            provider_chain=["internal", "replicate"],
        )
    )
    reference = gateway_pb2.JobSpec(
        reference=gateway_pb2.ReferenceSpec(
            reference_image_id="img",
            prompt="a knight",
            attributes=bridge_pb2.PhysicalAttributes(hair_color="auburn", extra={"freckles": "light"}),
            loras=[
                bridge_pb2.RemoteLora(url="https://h/x.safetensors", weight=4.0, trigger_words=["kn1ght"])
            ],
            mode=bridge_pb2.HOSTED_GENERATION_MODE_EDIT,
            size=size(256, 4096),
            seed=4294967295,
            steps=50,
            guidance_scale=20.0,
            provider_chain=["fal"],
        )
    )
    validate_job_spec(transform, CTX, rng=lambda: 5)
    assert validate_job_spec(reference, CTX, rng=no_rng) == reference


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("upscale", gateway_pb2.JOB_KIND_UPSCALE),
        ("generate", gateway_pb2.JOB_KIND_GENERATE),
        ("transform", gateway_pb2.JOB_KIND_TRANSFORM),
        ("reference", gateway_pb2.JOB_KIND_REFERENCE),
    ],
)
def test_job_kind(kind: str, expected: int) -> None:
    assert job_kind(base(kind)) == expected


def test_job_kind_of_an_empty_spec_is_unspecified() -> None:
    assert job_kind(gateway_pb2.JobSpec()) == gateway_pb2.JOB_KIND_UNSPECIFIED


# ---------------------------------------------------------------------------------------------------
# LoRAs
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stack",
    [
        [("style_a", 1.5), ("detail_a", 1.0), ("detail_b", -1.0)],  # sum 3.5 exactly
        [("style_a", -1.0), ("char_a", 0.5), ("plain", 0.0), ("detail_a", 0.5), ("detail_b", 0.5)],
        [("plain", 2.0)],
    ],
)
def test_lora_stacks_within_the_rules_pass(stack: list[tuple[str, float]]) -> None:
    resolved = resolve_upscale(upscale(loras=refs(*stack)), CTX)
    assert resolved.settings.loras == tuple(stack)


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        ([(n, 0.1) for n in ("plain", "char_a", "detail_a", "detail_b", "style_a", "style_b")], "max_loras"),
        ([("style_a", 1.0), ("style_b", 1.0)], "2 style LoRAs"),
        ([("detail_a", 0.5), ("detail_b", 0.5), ("detail_c", 0.5)], "3 detail LoRAs"),
        ([("plain", 2.0), ("detail_a", 1.0), ("char_a", 1.0)], "sum of |weight| is 4"),
    ],
)
def test_lora_stacking_rules(stack: list[tuple[str, float]], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("|", r"\|")) as info:
        resolve_upscale(upscale(loras=refs(*stack)), CTX)
    assert info.value.field == "upscale.settings.loras"


def test_per_type_limit_of_zero_forbids_the_type() -> None:
    library = diffusion_pb2.ListLorasResponse()
    library.CopyFrom(LIBRARY)
    library.rules.type_limits[0].max_count = 0  # style
    with pytest.raises(
        InvalidArgument, match="1 style LoRA \\(style_a\\); the stacking rules allow at most 0"
    ):
        resolve_upscale(upscale(loras=refs(("plain", 1.0), ("style_a", 1.0))), context(loras=library))


def test_incompatible_lora_is_a_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition, match=r"^upscale\.settings\.loras\[1\]\.name: .*SD15"):
        resolve_upscale(upscale(loras=refs(("plain", 1.0), ("sd15", 1.0))), CTX)


def test_lora_weight_range_comes_from_the_library() -> None:
    with pytest.raises(InvalidArgument, match=r"must be in -1\.\.1\.5 \('style_a'"):
        resolve_upscale(upscale(loras=refs(("style_a", -1.25))), CTX)
    with pytest.raises(InvalidArgument, match=r"must be in -2\.\.2 \('plain'"):
        resolve_upscale(upscale(loras=refs(("plain", -2.25))), CTX)


def test_without_a_lora_library_loras_are_unavailable_and_other_specs_pass() -> None:
    ctx = context(loras=None)
    with pytest.raises(Unavailable, match="the diffusion service is needed to check LoRAs"):
        validate_job_spec(gateway_pb2.JobSpec(upscale=upscale(loras=refs(("plain", 1.0)))), ctx)
    validate_job_spec(gateway_pb2.JobSpec(upscale=upscale()), ctx)


# ---------------------------------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["upscale", "generate"])
@pytest.mark.parametrize("seed", [None, -1])
def test_random_seed_is_drawn_and_written_with_the_batch_size(kind: str, seed: int | None) -> None:
    spec = base(kind)
    settings_pb = getattr(spec, kind).settings
    if seed is None:
        settings_pb.ClearField("seed")
    else:
        settings_pb.seed = seed
    before = gateway_pb2.JobSpec()
    before.CopyFrom(spec)

    stored = validate_job_spec(spec, CTX, rng=lambda: 123456)

    assert spec == before  # the input is left as it was
    stored_settings = getattr(stored, kind).settings
    assert (stored_settings.seed, stored_settings.batch_size) == (123456, 2)
    assert stored_settings.HasField("batch_size")
    # Validated again (e.g. resubmitted), the stored spec keeps its values and draws nothing.
    assert validate_job_spec(stored, CTX, rng=no_rng) == stored
    resolved = (
        resolve_upscale(stored.upscale, CTX)
        if kind == "upscale"
        else resolve_generate(stored.generate, CTX).upscale
    )
    assert (resolved.settings.seed, resolved.settings.batch_size) == (123456, 2)


def test_a_set_seed_and_batch_size_are_kept() -> None:
    spec = gateway_pb2.JobSpec(upscale=upscale(batch_size=3))
    spec.upscale.settings.seed = 2**63 - 1
    stored = validate_job_spec(spec, CTX, rng=no_rng)
    assert (stored.upscale.settings.seed, stored.upscale.settings.batch_size) == (2**63 - 1, 3)


def test_default_rng_draws_a_32_bit_seed() -> None:
    spec = gateway_pb2.JobSpec(upscale=gateway_pb2.UpscaleSpec(image_id="img"))
    seeds = {validate_job_spec(spec, CTX).upscale.settings.seed for _ in range(8)}
    assert all(0 <= seed < 2**32 for seed in seeds)
    assert len(seeds) > 1


def test_transform_seed_is_resolved_and_reference_seed_left_alone() -> None:
    transform = gateway_pb2.JobSpec(transform=gateway_pb2.TransformSpec(image_id="img", seed=-1))
    reference = base("reference")
    assert validate_job_spec(transform, CTX, rng=lambda: 99).transform.seed == 99
    stored = validate_job_spec(reference, CTX, rng=no_rng)
    assert not stored.reference.HasField("seed")


def test_input_spec_is_not_mutated() -> None:
    spec = gateway_pb2.JobSpec(upscale=gateway_pb2.UpscaleSpec(image_id="img"), label="keep")
    before = spec.SerializeToString(deterministic=True)
    validate_job_spec(spec, CTX, rng=lambda: 5)
    assert spec.SerializeToString(deterministic=True) == before
    assert not spec.upscale.HasField("settings")


def test_resolving_a_stored_spec_twice_gives_the_same_values() -> None:
    spec = gateway_pb2.JobSpec(upscale=upscale(seam_fix=gateway_pb2.SeamFixSettings(enabled=True)))
    spec.upscale.settings.ClearField("seed")
    spec.upscale.regions.add(rect=common_pb2.Rect(x=5, y=5, width=50, height=50))
    spec.upscale.tile_prompts[1] = "roof"
    stored = validate_job_spec(spec, CTX)
    assert resolve_upscale(stored.upscale, CTX) == resolve_upscale(stored.upscale, CTX)


def test_resolving_an_unresolved_seed_is_a_programming_error() -> None:
    spec = upscale()
    spec.settings.seed = -1
    with pytest.raises(ValueError, match="validate_job_spec"):
        resolve_upscale(spec, CTX)


def test_derive_seed_is_deterministic_and_in_range() -> None:
    assert derive_seed(7, "redraw", 3) == derive_seed(7, "redraw", 3)
    seeds = [derive_seed(2**63 - 1, "redraw", i) for i in range(100)]
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_derive_seed_differs_across_indices_passes_and_jobs() -> None:
    redraw = {derive_seed(42, "redraw", i) for i in range(10_000)}
    seam_fix = {derive_seed(42, "seam_fix", i) for i in range(10_000)}
    assert len(redraw) == len(seam_fix) == 10_000
    assert not redraw & seam_fix
    assert derive_seed(42, "redraw", 0) != derive_seed(43, "redraw", 0)


# ---------------------------------------------------------------------------------------------------
# Tile prompts
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("global_prompt", "own", "expected"),
    [
        ("oil painting", "a tower", "oil painting, a tower"),
        ("  oil painting ", " a tower  ", "oil painting, a tower"),
        ("oil painting", "", "oil painting"),
        ("oil painting", "   ", "oil painting"),
        ("", "a tower", "a tower"),
        ("", "", ""),
        ("oil painting", "oil painting", "oil painting"),
        ("oil painting", "oil painting, a tower", "oil painting, a tower"),
    ],
)
def test_tile_prompt(global_prompt: str, own: str, expected: str) -> None:
    assert tile_prompt(global_prompt, own) == expected


@FAST
@given(st.text(max_size=20), st.text(max_size=20))
def test_tile_prompt_never_adds_the_global_prompt_twice(global_prompt: str, own: str) -> None:
    once = tile_prompt(global_prompt, own)
    assert tile_prompt(global_prompt, once) == once


# ---------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------


def test_validate_settings_accepts_settings_without_an_image_or_a_cap() -> None:
    settings_pb = gateway_pb2.UpscaleSettings(
        target=target(scale=16.0),
        supersampling=4.0,
        ip_adapter=gateway_pb2.IpAdapterSettings(image_id="style"),
        loras=refs(("style_a", 1.0)),
        pre_upscaler="RealESRGAN_x4plus",
    )
    validate_settings(settings_pb, context(max_pixels=1))


@pytest.mark.parametrize(
    ("settings_fields", "error", "field"),
    [
        ({"strength": 0.0}, InvalidArgument, "preset.settings.strength"),
        ({"target": target(preset=0)}, InvalidArgument, "preset.settings.target.preset"),
        ({"supersampling": 5.0}, InvalidArgument, "preset.settings.supersampling"),
        ({"batch_size": 5}, InvalidArgument, "preset.settings.batch_size"),
        (
            {"ip_adapter": gateway_pb2.IpAdapterSettings(image_id="gone")},
            NotFound,
            "preset.settings.ip_adapter.image_id",
        ),
        ({"pre_upscaler": "nope"}, NotFound, "preset.settings.pre_upscaler"),
        ({"loras": refs(("nope", 1.0))}, NotFound, "preset.settings.loras[0].name"),
    ],
)
def test_validate_settings_refusals(settings_fields: dict, error: type[Exception], field: str) -> None:
    with pytest.raises(error) as info:
        validate_settings(gateway_pb2.UpscaleSettings(**settings_fields), CTX)
    assert getattr(info.value, "field", str(info.value).split(":")[0]) == field
