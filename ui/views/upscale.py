"""Upscale: settings on the left, the clickable tile grid, the selected tile and the result on the right."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import streamlit as st

from tilesmith import Region, UpscaleOptions, errors, images
from ui import components as ui
from ui._gateway import gateway

PAGE = "upscale"
FIELD = "upscale.settings."
TARGETS = ["x2", "x4", "2K", "4K", "8K", "Custom"]
DEFAULTS: dict[str, Any] = {
    "up_target": "x2",
    "up_custom_w": 2048,
    "up_custom_h": 2048,
    "up_fit": "stretch",
    "up_prompt": "",
    "up_negative": "",
    "up_caption_instruction": "",
    "up_auto_caption": False,
    "up_strength": 0.35,
    "up_steps": 30,
    "up_cfg": 7.0,
    "up_seed": -1,
    "up_ip": False,
    "up_ip_scale": 0.6,
    "up_tile": 1024,
    "up_overlap": 128,
    "up_controlnet": True,
    "up_cn_scale": 0.7,
    "up_seam": False,
    "up_seam_strength": 0.2,
    "up_color_fix": "none",
    "up_supersampling": 1.0,
    "up_selected": [],
}
STATE: dict[str, Any] = {
    "up_input": None,
    "up_tile_prompts": {},
    "up_regions": [],
    "up_loras": [],
    "up_job": None,
}


def init_state() -> None:
    s = st.session_state
    for key, value in DEFAULTS.items():
        s[key] = s.get(key, value)  # re-set every run: widget values survive a visit to another page
    for key, value in STATE.items():
        s.setdefault(key, value)


# --- Settings <-> options -----------------------------------------------------------------------------


def current_options(**overrides: Any) -> UpscaleOptions:
    s = st.session_state
    target: Any = {"x2": 2.0, "x4": 4.0}.get(s.up_target, s.up_target)
    custom = s.up_target == "Custom"
    if custom:
        target = (int(s.up_custom_w), int(s.up_custom_h))
    ip_id = s.get("up_ip_id") if s.up_ip else None
    options = UpscaleOptions(
        target=target,
        fit=s.up_fit if custom else None,
        supersampling=float(s.up_supersampling),
        tile_size=int(s.up_tile),
        overlap=int(s.up_overlap),
        prompt=s.up_prompt,
        negative_prompt=s.up_negative,
        tile_prompts={int(k): v for k, v in s.up_tile_prompts.items() if v.strip()},
        regions=[
            Region((int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"])), str(r.get("prompt") or ""))
            for r in s.up_regions
        ],
        strength=float(s.up_strength),
        steps=int(s.up_steps),
        cfg=float(s.up_cfg),
        seed=int(s.up_seed),
        controlnet=bool(s.up_controlnet),
        controlnet_scale=float(s.up_cn_scale),
        ip_adapter_image=ip_id,
        ip_adapter_scale=float(s.up_ip_scale) if ip_id else None,
        loras=[(entry["name"], float(entry["weight"])) for entry in s.up_loras],
        seam_fix=bool(s.up_seam),
        seam_fix_strength=float(s.up_seam_strength) if s.up_seam else None,
        color_fix=s.up_color_fix,
        auto_caption=bool(s.up_auto_caption),
        caption_instruction=s.up_caption_instruction,
    )
    return UpscaleOptions(**{**options.__dict__, **overrides})


def apply_options(options: UpscaleOptions) -> None:
    """Put a preset's options into the widgets (called from a callback, before they are drawn)."""
    s = st.session_state
    match options.target:
        case None:
            s.up_target = "x2"
        case float() | int() as scale:
            s.up_target = {2.0: "x2", 4.0: "x4"}.get(float(scale), "x2")
        case str() as preset:
            s.up_target = preset.upper()
        case (width, height):
            s.up_target, s.up_custom_w, s.up_custom_h = "Custom", width, height
    s.up_fit = options.fit or "stretch"
    tile = options.tile_size
    s.up_tile = DEFAULTS["up_tile"] if tile is None else (tile if isinstance(tile, int) else tile[0])
    for key, value in [
        ("up_supersampling", options.supersampling),
        ("up_overlap", options.overlap),
        ("up_strength", options.strength),
        ("up_steps", options.steps),
        ("up_cfg", options.cfg),
        ("up_seed", options.seed),
        ("up_controlnet", options.controlnet),
        ("up_cn_scale", options.controlnet_scale),
        ("up_ip_scale", options.ip_adapter_scale),
        ("up_seam_strength", options.seam_fix_strength),
    ]:
        s[key] = DEFAULTS[key] if value is None else value
    s.up_prompt, s.up_negative = options.prompt, options.negative_prompt
    s.up_caption_instruction, s.up_auto_caption = options.caption_instruction, options.auto_caption
    s.up_seam = options.seam_fix
    s.up_color_fix = options.color_fix or "none"
    s.up_loras = [{"name": name, "weight": weight} for name, weight in options.loras]
    s.up_ip = options.ip_adapter_image is not None
    s.up_ip_id = options.ip_adapter_image


# --- Actions (callbacks: they run before the page is drawn) ---------------------------------------


def submit(selected: list[int] | None = None, *, all_tiles: bool = False) -> None:
    s = st.session_state
    ui.clear_error(PAGE)
    if s.up_input is None:
        ui.set_error(PAGE, ValueError("upload an image first"))
        return
    tiles = [] if all_tiles else sorted(selected if selected is not None else s.up_selected)
    if not all_tiles and not tiles and not s.up_regions:
        ui.set_error(PAGE, ValueError("select at least one tile in the grid (or add a region) first"))
        return
    options = current_options(selected_tiles=tiles)
    if all_tiles and options.regions:
        # Regions alone would re-draw only the regions: name every tile, so the tiles come first and the
        # regions go over them (UpscaleSpec.selected_tiles).
        layout = ui.attempt(PAGE, gateway().client.plan_grid, s.up_input["id"], options)
        if layout is None:
            return
        options = dataclasses.replace(options, selected_tiles=tuple(range(len(layout.plan.tiles))))
    job = ui.attempt(PAGE, gateway().client.upscale, s.up_input["id"], options, label=s.up_input["name"])
    if job is not None:
        s.up_job = job.id
        s.up_job_grid = grid_signature()
        gateway().watch(job.id)


def caption(indices: list[int]) -> None:
    s = st.session_state
    ui.clear_error(PAGE)
    if s.up_input is None:
        return

    def run() -> None:
        for answer in gateway().client.caption_tiles(
            s.up_input["id"], current_options(), tile_indices=indices
        ):
            s.up_tile_prompts[answer.index] = answer.caption
            s[f"up_tp_{answer.index}"] = answer.caption

    ui.attempt(PAGE, run)


def use_result(image_id: str, png: bytes) -> None:
    s = st.session_state
    s.up_input = {"id": image_id, "png": png, "name": f"result {s.up_job}"}
    reset_for_new_input()


def reset_for_new_input() -> None:
    s = st.session_state
    s.up_selected, s.up_tile_prompts, s.up_job, s.up_focus = [], {}, None, None


def new_upload() -> None:
    st.session_state.up_file_changed = True


def save_preset() -> None:
    ui.clear_error(PAGE)
    name = st.session_state.get("up_preset_name", "").strip()
    if ui.attempt(PAGE, gateway().client.save_preset, name, current_options()) is not None:
        st.session_state.up_preset_choice = name
        st.toast(f"Preset {name!r} saved", icon=":material/save:")


def load_preset() -> None:
    ui.clear_error(PAGE)
    name = st.session_state.get("up_preset_choice")
    preset = ui.attempt(PAGE, gateway().client.get_preset, name) if name else None
    if preset is not None:
        apply_options(UpscaleOptions.from_settings(preset.settings))


def delete_preset() -> None:
    ui.clear_error(PAGE)
    name = st.session_state.get("up_preset_choice")
    if name:
        ui.attempt(PAGE, gateway().client.delete_preset, name)
        st.session_state.up_preset_choice = None


# --- The grid -------------------------------------------------------------------------------------------


def grid_signature() -> tuple:
    s = st.session_state
    image_id = s.up_input["id"] if s.up_input else None
    settings = current_options(tile_prompts={}, regions=()).to_settings()
    grid_part = (
        settings.target.SerializeToString(deterministic=True),
        settings.supersampling,
        settings.tile_size.width,
        settings.overlap,
        settings.seam_fix.enabled,
    )
    return (image_id, grid_part)


@st.cache_data(show_spinner=False, max_entries=64)
def render(image_id: str, settings: bytes, selected: tuple[int, ...], processed: tuple[int, ...]):
    """The grid's layout and its overview as PNG bytes (what `ui.tile_grid` embeds)."""
    from tilesmith.v1 import gateway_pb2

    options = UpscaleOptions.from_settings(gateway_pb2.UpscaleSettings.FromString(settings))
    rendered = gateway().client.render_grid(
        image_id, options, selected=selected, processed=processed, max_side=768
    )
    return rendered.layout, images.encode_bytes(rendered.overview, "png")


# --- Page -----------------------------------------------------------------------------------------------


def settings_column() -> None:
    s = st.session_state
    upload = st.file_uploader(
        "Image",
        type=["png", "jpg", "jpeg", "webp"],
        key="up_file",
        on_change=new_upload,
        help="PNG, JPEG or WebP. Transparency (RGBA) is kept and re-attached at the output size.",
    )
    del upload  # taken in by `take_upload` before the page is drawn
    ui.field_error(PAGE, "upscale.image_id", "image")

    target_col, custom_col = st.columns([1, 2])
    target_col.selectbox(
        "Target",
        TARGETS,
        key="up_target",
        help="x2 / x4: scale factors. 2K / 4K / 8K: the longer side becomes 2048 / 3840 / 7680 px, aspect "
        "kept. Custom: an exact size.",
    )
    if s.up_target == "Custom":
        w_col, h_col, fit_col = custom_col.columns(3)
        w_col.number_input("Width", 1, 65535, key="up_custom_w", help="Output width in pixels")
        h_col.number_input("Height", 1, 65535, key="up_custom_h", help="Output height in pixels")
        fit_col.selectbox(
            "Fit",
            ["stretch", "cover", "contain"],
            key="up_fit",
            help="Stretch: exact size. Cover: scale and crop. Contain: fit inside.",
        )
    ui.field_error(PAGE, f"{FIELD}target")

    with st.expander("Presets", icon=":material/bookmarks:"):
        presets = ui.read(PAGE, gateway().client.list_presets) or []
        names = [preset.name for preset in presets]
        if s.get("up_preset_choice") not in names:
            s.up_preset_choice = None
        st.selectbox(
            "Preset",
            names,
            index=None,
            key="up_preset_choice",
            placeholder="No preset chosen",
            help="Presets are stored by the gateway and shared by every user of it.",
        )
        load_col, delete_col = st.columns(2)
        load_col.button(
            "Load",
            on_click=load_preset,
            disabled=not s.up_preset_choice,
            key="up_preset_load",
            help="Replace the settings below with the preset's",
            width="stretch",
        )
        delete_col.button(
            "Delete",
            on_click=delete_preset,
            disabled=not s.up_preset_choice,
            key="up_preset_delete",
            help="Delete the chosen preset",
            width="stretch",
        )
        name_col, save_col = st.columns([3, 1], vertical_alignment="bottom")
        name_col.text_input(
            "Save current settings as",
            key="up_preset_name",
            max_chars=100,
            help="Letters, digits, space, '.', '_', '-'; an existing name is replaced.",
        )
        save_col.button(
            "Save", on_click=save_preset, key="up_preset_save", help="Save the settings as a preset"
        )

    with st.expander("Model & LoRAs", icon=":material/neurology:"):
        summary = ui.read(PAGE, ui.model_summary)
        st.text(f"Model: {summary or 'unavailable'}")
        ui.lora_stack(PAGE, "up_loras", FIELD)

    with st.expander("Prompts", expanded=True, icon=":material/edit_note:"):
        st.text_area(
            "Prompt",
            key="up_prompt",
            max_chars=2000,
            height=80,
            help="Global prompt, put before every tile's own prompt or caption.",
        )
        ui.field_error(PAGE, f"{FIELD}prompt")
        st.text_area(
            "Negative prompt",
            key="up_negative",
            max_chars=2000,
            height=68,
            help="What every tile should avoid.",
        )
        ui.field_error(PAGE, f"{FIELD}negative_prompt")
        st.text_area(
            "Caption instruction",
            key="up_caption_instruction",
            max_chars=4000,
            height=68,
            help="Instruction for the captioning model (Caption All / auto-caption). Empty: the "
            "service's default.",
        )
        st.toggle(
            "Auto-caption tiles without a prompt",
            key="up_auto_caption",
            help="Caption every tile that has no prompt of its own before re-drawing it.",
        )
        ui.field_error(PAGE, f"{FIELD}caption")

    with st.expander("Generation", icon=":material/tune:"):
        st.slider(
            "Strength",
            0.01,
            1.0,
            step=0.01,
            key="up_strength",
            help="How far each tile is re-drawn: low keeps the input, high invents detail.",
        )
        ui.field_error(PAGE, f"{FIELD}strength")
        steps_col, cfg_col = st.columns(2)
        steps_col.number_input(
            "Steps", 1, 150, key="up_steps", help="Scheduler steps; img2img runs steps x strength of them."
        )
        cfg_col.number_input("CFG", 0.0, 30.0, step=0.5, key="up_cfg", help="Classifier-free guidance scale.")
        ui.field_error(PAGE, f"{FIELD}steps", f"{FIELD}cfg_scale")
        st.number_input(
            "Seed",
            -1,
            2**53 - 1,
            key="up_seed",
            help="-1 draws a random seed; the job reports the one it used.",
        )
        ui.field_error(PAGE, f"{FIELD}seed")

    with st.expander("Style transfer", icon=":material/palette:"):
        st.toggle("IP-Adapter", key="up_ip", help="Steer the re-draw towards a reference image's style.")
        style = st.file_uploader(
            "Style reference",
            type=["png", "jpg", "jpeg", "webp"],
            key="up_ip_file",
            disabled=not s.up_ip,
            help="The image whose style the tiles should take.",
        )
        if style is not None:
            s.up_ip_id = ui.uploaded_image_id(PAGE, "up_ip", style)
        st.slider(
            "Style scale",
            0.0,
            2.0,
            step=0.05,
            key="up_ip_scale",
            disabled=not s.up_ip,
            help="How strongly the style steers the re-draw (0.6 is a balanced start).",
        )
        ui.field_error(PAGE, f"{FIELD}ip_adapter")

    with st.expander("Advanced", icon=":material/settings:"):
        tile_col, overlap_col = st.columns(2)
        tile_col.number_input(
            "Tile size",
            64,
            4096,
            step=64,
            key="up_tile",
            help="Tile side in working pixels (a multiple of 8); 1024 suits SDXL.",
        )
        overlap_col.number_input(
            "Overlap",
            0,
            2048,
            step=8,
            key="up_overlap",
            help="Pixels neighbouring tiles share; blended so no seams show.",
        )
        ui.field_error(PAGE, f"{FIELD}tile_size", f"{FIELD}overlap")
        st.toggle("ControlNet tile", key="up_controlnet", help="Keep each tile's structure while re-drawing.")
        st.slider(
            "ControlNet scale",
            0.0,
            2.0,
            step=0.05,
            key="up_cn_scale",
            disabled=not s.up_controlnet,
            help="How firmly the structure is kept.",
        )
        ui.field_error(PAGE, f"{FIELD}controlnet")
        st.toggle("Seam fix", key="up_seam", help="A second, gentler pass over the seams between tiles.")
        st.slider(
            "Seam fix strength",
            0.01,
            1.0,
            step=0.01,
            key="up_seam_strength",
            disabled=not s.up_seam,
            help="Strength of the seam pass (half the main strength is a good start).",
        )
        ui.field_error(PAGE, f"{FIELD}seam_fix")
        st.selectbox(
            "Colour fix",
            ["none", "wavelet", "adain"],
            key="up_color_fix",
            help="Match colours to the input after blending: wavelet keeps detail, AdaIN matches "
            "overall statistics.",
        )
        st.slider(
            "Supersampling",
            1.0,
            4.0,
            step=0.25,
            key="up_supersampling",
            help="Re-draw above the target size, then downscale: sharper, slower.",
        )
        ui.field_error(PAGE, f"{FIELD}supersampling", f"{FIELD}color_fix")

    with st.expander("Regions", icon=":material/crop_free:"):
        st.caption(
            "Rectangles in input pixels, each re-drawn with its own prompt: drag one on the image, "
            "then give it a prompt (or edit, add and delete rows) in the table."
        )
        if s.up_input is not None:
            drawn = ui.region_drawer(
                s.up_input["png"],
                [(int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"])) for r in s.up_regions],
                key="up_draw",
            )
            if drawn is not None:
                x, y, w, h = drawn
                s.up_regions = [*s.up_regions, {"x": x, "y": y, "w": w, "h": h, "prompt": ""}]
                st.rerun()
        frame = pd.DataFrame(s.up_regions, columns=["x", "y", "w", "h", "prompt"])
        edited = st.data_editor(
            frame,
            key="up_regions_editor",
            num_rows="dynamic",
            width="stretch",
            column_config={
                "x": st.column_config.NumberColumn("x", min_value=0, step=1, help="Left edge"),
                "y": st.column_config.NumberColumn("y", min_value=0, step=1, help="Top edge"),
                "w": st.column_config.NumberColumn("w", min_value=1, step=1, help="Width"),
                "h": st.column_config.NumberColumn("h", min_value=1, step=1, help="Height"),
                "prompt": st.column_config.TextColumn("prompt", help="Put after the global prompt"),
            },
        )
        s.up_regions = [
            row
            for row in edited.to_dict("records")
            if all(pd.notna(row.get(c)) for c in ("x", "y", "w", "h"))
        ]
        ui.field_error(PAGE, "upscale.regions")

    has_input = s.up_input is not None
    st.button(
        "Upscale All",
        type="primary",
        icon=":material/auto_awesome:",
        key="up_all",
        on_click=submit,
        kwargs={"all_tiles": True},
        disabled=not has_input,
        width="stretch",
        help="Re-draw every tile with the settings above, then the regions over them.",
    )
    selected_col, caption_col = st.columns(2)
    selected_col.button(
        "Upscale Selected",
        key="up_selected_run",
        on_click=submit,
        disabled=not has_input,
        width="stretch",
        help="Re-draw only the tiles selected in the grid (and the regions).",
    )
    caption_col.button(
        "Caption All",
        key="up_caption_all",
        on_click=caption,
        args=([],),
        disabled=not has_input,
        width="stretch",
        help="Caption every tile with the vision model; the captions "
        "become the tiles' prompts, which you can edit.",
    )
    ui.field_error(PAGE, "upscale.selected_tiles", "upscale.tile_prompts")
    ui.page_error(PAGE)


def take_upload() -> None:
    """A new file in the uploader becomes the input (read from session state before it is drawn)."""
    s = st.session_state
    upload = s.get("up_file")
    if upload is not None and (s.get("up_file_changed") or s.up_input is None):
        image_id = ui.uploaded_image_id(PAGE, "up", upload)
        if image_id is not None:
            s.up_input = {"id": image_id, "png": upload.getvalue(), "name": upload.name}
            reset_for_new_input()
        s.up_file_changed = False


def render_grid() -> tuple[Any, bytes] | None:
    """The grid for the current settings, drawn before the columns so that a setting the gateway
    refuses is reported next to its control (as `upscale.settings...`, like a submit's error)."""
    s = st.session_state
    if s.up_input is None:
        return None
    watch = gateway().watch(s.up_job) if s.up_job else None
    processed = tuple(sorted(watch.processed)) if watch and s.get("up_job_grid") == grid_signature() else ()
    settings = (
        current_options(tile_prompts={}, regions=()).to_settings().SerializeToString(deterministic=True)
    )
    try:
        return render(s.up_input["id"], settings, tuple(sorted(s.up_selected)), processed)
    except errors.InvalidArgument as exc:
        if ui.current_error(PAGE) is None:
            ui.set_error(PAGE, errors.InvalidArgument(f"upscale.{exc.field}", exc.message))
    except Exception as exc:  # never a traceback: shown above the grid
        ui.set_error("up_grid", exc)
    return None


def grid_column(rendered: tuple[Any, bytes] | None) -> None:
    s = st.session_state
    ui.job_status(PAGE, "up_job")
    if s.up_input is None:
        st.info("Upload an image to see its tile grid.", icon=":material/grid_on:")
        return
    watch = gateway().watch(s.up_job) if s.up_job else None
    if rendered is None:
        ui.page_error("up_grid")
        ui.clear_error("up_grid")
        st.info("The grid appears once the settings are valid.", icon=":material/grid_off:")
        return
    layout, overview = rendered
    count = len(layout.plan.tiles)
    s.up_selected = [index for index in s.up_selected if index < count]
    clicked = ui.tile_grid(overview, layout, key="up_grid")
    if clicked is not None:
        s.up_selected = sorted(set(s.up_selected) ^ {clicked})
        s.up_focus = clicked
        st.rerun()
    st.caption(
        f"{layout.input_size.width}x{layout.input_size.height} → {layout.output_size.width}x"
        f"{layout.output_size.height} · {layout.plan.cols}x{layout.plan.rows} tiles of "
        f"{layout.plan.tile_size.width} px (working {layout.working_size.width}x{layout.working_size.height}). "
        "Click a tile to select it (blue); processed tiles turn green."
    )
    st.multiselect(
        "Selected tiles",
        list(range(count)),
        key="up_selected",
        help="The tiles Upscale Selected re-draws; clicking the grid toggles them too.",
    )
    focus = s.get("up_focus")
    if focus is None and s.up_selected:
        focus = s.up_selected[-1]
    if focus is not None and focus < count:
        tile_detail(layout, focus, watch)
    if watch is not None and watch.outcome == "succeeded":
        result_section(watch.job_id)


def tile_detail(layout: Any, index: int, watch: Any) -> None:
    s = st.session_state
    st.subheader(f"Tile {index}", divider="gray")
    original = ui.open_image(s.up_input["png"])
    box = ui.tile_rect_in_input(layout, index)
    before_col, after_col = st.columns(2)
    before_col.image(original.crop(box), caption="Original", width="stretch")
    processed = None
    if watch is not None and watch.outcome == "succeeded":
        result = ui.open_image(ui.job_result_png(watch.job_id))
        sx, sy = result.width / original.width, result.height / original.height
        processed = result.crop(
            (round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy))
        )
    elif watch is not None and index in watch.previews:
        processed = ui.open_image(watch.previews[index])
    if processed is not None:
        after_col.image(processed, caption="Processed", width="stretch")
    else:
        after_col.info("Not processed yet.")
    prompt = st.text_input(
        "Tile prompt",
        value=s.up_tile_prompts.get(index, ""),
        key=f"up_tp_{index}",
        max_chars=2000,
        help="This tile's own prompt, put after the global prompt.",
    )
    s.up_tile_prompts[index] = prompt
    run_col, caption_col = st.columns(2)
    run_col.button(
        "Upscale this tile",
        key="up_tile_run",
        on_click=submit,
        args=([index],),
        width="stretch",
        help="Re-draw only this tile.",
    )
    caption_col.button(
        "Caption this tile",
        key="up_tile_caption",
        on_click=caption,
        args=([index],),
        width="stretch",
        help="Ask the vision model for this tile's prompt.",
    )


def result_section(job_id: str) -> None:
    s = st.session_state
    st.subheader("Result", divider="gray")
    data = ui.read(PAGE, ui.job_result_png, job_id)
    if data is None:
        return
    result = ui.open_image(data)
    original = ui.open_image(s.up_input["png"])
    before_col, after_col = st.columns(2)
    before_col.image(original, caption=f"Before · {original.width}x{original.height}", width="stretch")
    after_col.image(result, caption=f"After · {result.width}x{result.height}", width="stretch")
    ui.result_actions(job_id, key="up_result", use_as_input=use_result)


init_state()
st.title("Upscale")
take_upload()
grid = render_grid()
left, right = st.columns([2, 3], gap="large")
with left:
    settings_column()
with right:
    grid_column(grid)
