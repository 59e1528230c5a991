"""Generate: a prompt -> text-to-image -> pre-upscale -> tiled enhancement, with LoRAs."""

from __future__ import annotations

import streamlit as st

from tilesmith import GenerateOptions, UpscaleOptions
from ui import components as ui
from ui._gateway import gateway

PAGE = "generate"
FIELD = "generate."


def submit() -> None:
    s = st.session_state
    ui.clear_error(PAGE)
    target = {"x2": 2.0, "x4": 4.0}.get(s.gen_target, s.gen_target)
    options = GenerateOptions(
        negative_prompt=s.gen_negative,
        base_size=(int(s.gen_width), int(s.gen_height)),
        base_steps=int(s.gen_base_steps),
        base_cfg=float(s.gen_cfg),
        enhance=UpscaleOptions(
            target=target,
            tile_size=int(s.gen_tile),
            overlap=int(s.gen_overlap),
            strength=float(s.gen_strength),
            steps=int(s.gen_steps),
            seed=int(s.gen_seed),
            loras=[(entry["name"], float(entry["weight"])) for entry in s.gen_loras],
        ),
    )
    job = ui.attempt(PAGE, gateway().client.generate, s.gen_prompt, options, label=s.gen_prompt[:200])
    if job is not None:
        s.gen_job = job.id
        gateway().watch(job.id)


st.title("Generate")
left, right = st.columns([2, 3], gap="large")
with left:
    st.text_area(
        "Prompt",
        key="gen_prompt",
        max_chars=2000,
        height=100,
        help="What to generate (1..2000 characters); compel syntax works.",
    )
    ui.field_error(PAGE, f"{FIELD}prompt")
    st.text_area("Negative prompt", key="gen_negative", max_chars=2000, height=68, help="What to avoid.")
    size_w, size_h = st.columns(2)
    size_w.number_input(
        "Base width",
        64,
        4096,
        1024,
        step=64,
        key="gen_width",
        help="Width of the text-to-image picture (a multiple of 8).",
    )
    size_h.number_input(
        "Base height",
        64,
        4096,
        1024,
        step=64,
        key="gen_height",
        help="Height of the text-to-image picture (a multiple of 8).",
    )
    ui.field_error(PAGE, f"{FIELD}base_size")
    steps_col, cfg_col = st.columns(2)
    steps_col.number_input("Base steps", 1, 150, 30, key="gen_base_steps", help="Steps of the base picture.")
    cfg_col.number_input("CFG", 0.0, 30.0, 7.0, step=0.5, key="gen_cfg", help="Guidance of the base picture.")
    ui.field_error(PAGE, f"{FIELD}base_steps", f"{FIELD}base_cfg_scale")
    with st.expander("Enhance", expanded=True, icon=":material/auto_awesome:"):
        st.selectbox(
            "Target",
            ["x2", "x4", "2K", "4K", "8K"],
            index=0,
            key="gen_target",
            help="Size of the final picture relative to the base (or a 2K / 4K / 8K longer side).",
        )
        tile_col, overlap_col = st.columns(2)
        tile_col.number_input(
            "Tile size", 64, 4096, 1024, step=64, key="gen_tile", help="Tile side in working pixels."
        )
        overlap_col.number_input("Overlap", 0, 2048, 128, step=8, key="gen_overlap", help="Tile overlap.")
        strength_col, steps_col = st.columns(2)
        strength_col.slider(
            "Strength", 0.01, 1.0, 0.35, step=0.01, key="gen_strength", help="How far each tile is re-drawn."
        )
        steps_col.number_input("Steps", 1, 150, 30, key="gen_steps", help="Steps of each tile's re-draw.")
        st.number_input("Seed", -1, 2**53 - 1, -1, key="gen_seed", help="-1: random (reported by the job).")
        ui.field_error(PAGE, f"{FIELD}settings")
    with st.expander("LoRAs", icon=":material/neurology:"):
        ui.lora_stack(PAGE, "gen_loras", f"{FIELD}settings.")
    st.button(
        "Generate",
        type="primary",
        key="gen_run",
        on_click=submit,
        width="stretch",
        icon=":material/brush:",
        help="Generate, then enhance with the tile pipeline.",
    )
    ui.page_error(PAGE)
with right:
    ui.job_result(PAGE, "gen_job", key="gen_result", with_size=True)
