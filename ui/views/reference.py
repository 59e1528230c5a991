"""Reference: hosted depth-controlled (or edit) generation from a reference image, with a vision model's
suggested prompt and the subject's physical attributes."""

from __future__ import annotations

import streamlit as st

from tilesmith import ReferenceOptions
from tilesmith.v1 import bridge_pb2
from ui import components as ui
from ui._gateway import gateway

PAGE = "reference"
FIELD = "reference."
ATTRIBUTES = {
    "hair_color": "Hair colour",
    "hair_style": "Hair style",
    "eye_color": "Eye colour",
    "skin_tone": "Skin tone",
    "body_type": "Body type",
    "age": "Age",
}


def analyze() -> None:
    s = st.session_state
    ui.clear_error(PAGE)
    image_id = ui.uploaded_image_id(PAGE, "ref", s.get("ref_file"))
    if image_id is None:
        if ui.current_error(PAGE) is None:
            ui.set_error(PAGE, ValueError("upload a reference image first"))
        return
    answer = ui.attempt(PAGE, gateway().client.analyze_image, image_id)
    if answer is not None:
        s.ref_analysis = {
            "description": answer.description,
            "prompt": answer.suggested_prompt,
            "by": f"{answer.provider} / {answer.model}",
        }


def use_suggestion() -> None:
    st.session_state.ref_prompt = st.session_state.ref_analysis["prompt"]


def submit() -> None:
    s = st.session_state
    ui.clear_error(PAGE)
    image_id = ui.uploaded_image_id(PAGE, "ref", s.get("ref_file"))
    if image_id is None:
        if ui.current_error(PAGE) is None:
            ui.set_error(PAGE, ValueError("upload a reference image first"))
        return
    attributes = bridge_pb2.PhysicalAttributes(**{name: s.get(f"ref_{name}", "") for name in ATTRIBUTES})
    options = ReferenceOptions(mode=s.ref_mode, attributes=attributes)
    job = ui.attempt(PAGE, gateway().client.reference, image_id, s.ref_prompt, options)
    if job is not None:
        s.ref_job = job.id
        gateway().watch(job.id)


st.session_state.setdefault("ref_prompt", "")
st.title("Reference")
left, right = st.columns([2, 3], gap="large")
with left:
    upload = st.file_uploader(
        "Reference image",
        type=["png", "jpg", "jpeg", "webp"],
        key="ref_file",
        help="Drag and drop the reference: its layout (depth) or content (edit) guides "
        "the generation. At most 10 MB.",
    )
    ui.field_error(PAGE, f"{FIELD}reference_image_id")
    st.button(
        "Analyze",
        key="ref_analyze",
        on_click=analyze,
        icon=":material/visibility:",
        help="Describe the reference with a hosted vision model and suggest a prompt.",
    )
    analysis = st.session_state.get("ref_analysis")
    if analysis:
        st.text(f"Description ({analysis['by']}): {analysis['description']}")
        st.text(f"Suggested prompt: {analysis['prompt']}")
        st.button("Use it", key="ref_use", on_click=use_suggestion, help="Copy the suggested prompt below.")
    st.text_area(
        "Prompt",
        key="ref_prompt",
        max_chars=4000,
        height=100,
        help="What to generate; trigger words and attribute phrases are added by the gateway.",
    )
    ui.field_error(PAGE, f"{FIELD}prompt")
    st.radio(
        "Mode",
        ["depth", "edit"],
        key="ref_mode",
        horizontal=True,
        help="Depth keeps the reference's layout; edit changes the reference itself.",
    )
    with st.expander("Physical attributes", icon=":material/person:"):
        columns = st.columns(2)
        for position, (name, label) in enumerate(ATTRIBUTES.items()):
            columns[position % 2].text_input(
                label,
                key=f"ref_{name}",
                max_chars=100,
                help=f"Added to the prompt as a short phrase ({label.lower()}).",
            )
        ui.field_error(PAGE, f"{FIELD}attributes")
    st.button(
        "Generate",
        type="primary",
        key="ref_run",
        on_click=submit,
        width="stretch",
        icon=":material/photo_camera:",
        help="Generate on the hosted provider chain.",
    )
    ui.page_error(PAGE)
with right:
    if upload is not None:
        st.image(ui.open_image(upload.getvalue()), caption="Reference", width="stretch")
    ui.job_result(PAGE, "ref_job", key="ref_result")
