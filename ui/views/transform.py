"""Transform: one image through img2img, modify or copy, internally or on a hosted provider chain."""

from __future__ import annotations

import streamlit as st

from tilesmith import TransformOptions
from ui import components as ui
from ui._gateway import gateway

PAGE = "transform"
FIELD = "transform."
MODES = {
    "modify": "MODIFY — changes the image as the prompt says (denoise = 1 − reference strength).",
    "copy": "COPY — reproduces the image faithfully (denoise ≤ 0.05, CFG 1, fixed steps).",
}


def new_upload() -> None:
    st.session_state.tf_mode = "modify"  # a fresh image is usually there to be changed


def submit() -> None:
    s = st.session_state
    ui.clear_error(PAGE)
    image_id = ui.uploaded_image_id(PAGE, "tf", s.get("tf_file"))
    if image_id is None:
        if ui.current_error(PAGE) is None:
            ui.set_error(PAGE, ValueError("upload an image first"))
        return
    modify = s.tf_mode == "modify"
    options = TransformOptions(
        mode=s.tf_mode,
        reference_strength=float(s.tf_strength),
        prompt=s.tf_prompt,
        negative_prompt=s.tf_negative if modify else "",
        steps=int(s.tf_steps) if modify else None,
        cfg=float(s.tf_cfg) if modify else None,
        seed=int(s.tf_seed),
        provider_chain=list(s.tf_providers),
    )
    job = ui.attempt(PAGE, gateway().client.transform, image_id, options)
    if job is not None:
        s.tf_job = job.id
        gateway().watch(job.id)


st.session_state.setdefault("tf_mode", "modify")
st.title("Transform")
left, right = st.columns([2, 3], gap="large")
with left:
    upload = st.file_uploader(
        "Image",
        type=["png", "jpg", "jpeg", "webp"],
        key="tf_file",
        on_change=new_upload,
        help="The picture to transform; uploading one selects Modify.",
    )
    ui.field_error(PAGE, f"{FIELD}image_id")
    st.segmented_control(
        "Mode", list(MODES), key="tf_mode", help="Modify changes the picture; Copy keeps it."
    )
    mode = st.session_state.tf_mode or "modify"
    st.info(MODES[mode], icon=":material/info:")
    ui.field_error(PAGE, f"{FIELD}mode")
    st.slider(
        "Reference strength",
        0.0,
        1.0,
        0.5,
        step=0.01,
        key="tf_strength",
        help="How much of the input is kept: 1.0 keeps everything, 0.0 keeps nothing.",
    )
    ui.field_error(PAGE, f"{FIELD}reference_strength")
    st.text_area("Prompt", key="tf_prompt", max_chars=2000, height=80, help="What the result should show.")
    ui.field_error(PAGE, f"{FIELD}prompt")
    copy = mode == "copy"
    st.text_area(
        "Negative prompt",
        key="tf_negative",
        max_chars=2000,
        height=68,
        disabled=copy,
        help="Modify only: what to avoid.",
    )
    steps_col, cfg_col = st.columns(2)
    steps_col.number_input(
        "Steps", 1, 150, 25, key="tf_steps", disabled=copy, help="Modify only; default 25."
    )
    cfg_col.number_input(
        "CFG", 0.0, 30.0, 7.5, step=0.5, key="tf_cfg", disabled=copy, help="Modify only; default 7.5."
    )
    ui.field_error(PAGE, f"{FIELD}negative_prompt", f"{FIELD}steps", f"{FIELD}cfg_scale")
    st.number_input("Seed", -1, 2**53 - 1, -1, key="tf_seed", help="-1: random (reported by the job).")
    providers = ui.read(PAGE, gateway().client.list_providers)
    names = [provider.name for provider in providers.providers] if providers else ["internal"]
    st.multiselect(
        "Provider chain",
        names,
        key="tf_providers",
        help="Providers to try in order; empty: the gateway's configured chain.",
    )
    ui.field_error(PAGE, f"{FIELD}provider_chain")
    st.button(
        "Transform",
        type="primary",
        key="tf_run",
        on_click=submit,
        width="stretch",
        icon=":material/transform:",
        help="Run the transform as a job.",
    )
    ui.page_error(PAGE)
with right:
    if upload is not None:
        st.image(ui.open_image(upload.getvalue()), caption="Input", width="stretch")
    ui.job_result(PAGE, "tf_job", key="tf_result")
