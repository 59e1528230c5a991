"""Models: the diffusion profile and models, and the LoRA library (architecture and library metadata as
text), with upload and delete."""

from __future__ import annotations

import streamlit as st

from tilesmith.v1 import common_pb2, diffusion_pb2
from ui import components as ui
from ui._gateway import gateway

PAGE = "models"
LORA_TYPES = ["", "style", "detail", "character"]


def upload() -> None:
    s = st.session_state
    ui.clear_error(PAGE)
    file = s.get("models_file")
    if file is None:
        ui.set_error(PAGE, ValueError("choose a .safetensors file first"))
        return
    metadata = diffusion_pb2.LoraMetadata(
        type=diffusion_pb2.LoraType.Value(f"LORA_TYPE_{s.models_type.upper()}") if s.models_type else 0,
        trigger_words=[word.strip() for word in s.models_triggers.split(",") if word.strip()],
        description=s.models_description,
    )
    name = s.models_name.strip() or file.name.removesuffix(".safetensors")
    info = ui.attempt(
        PAGE,
        gateway().client.upload_lora,
        file.getvalue(),
        name,
        metadata=metadata,
        overwrite=s.models_overwrite,
    )
    if info is not None:
        ui.lora_library.clear()
        st.toast(f"LoRA {info.name} uploaded", icon=":material/upload:")


def delete(name: str) -> None:
    ui.clear_error(PAGE)
    ui.attempt(PAGE, gateway().client.delete_lora, name)
    ui.lora_library.clear()


st.title("Models")
models = ui.read(PAGE, gateway().client.list_models)
if models is not None:
    st.caption(f"Profile {models.profile} · {models.device} · {models.dtype} · batch {models.max_batch_size}")
    st.dataframe(
        [
            {
                "name": model.name,
                "kind": diffusion_pb2.ModelKind.Name(model.kind).removeprefix("MODEL_KIND_").lower(),
                "architecture": model.architecture
                or common_pb2.BaseArchitecture.Name(model.base_architecture).removeprefix(
                    "BASE_ARCHITECTURE_"
                ),
                "default": model.is_default,
                "loaded": model.loaded,
                "source": model.source,
            }
            for model in models.models
        ],
        hide_index=True,
        width="stretch",
    )

st.subheader("LoRA library", divider="gray")
library = ui.read(PAGE, ui.lora_library) or []
if library:
    st.dataframe(library, hide_index=True, width="stretch")  # every cell is text: names never become HTML
    name_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
    name_col.selectbox(
        "LoRA",
        [row["name"] for row in library],
        key="models_delete_choice",
        help="The LoRA to delete from the library.",
    )
    button_col.button(
        "Delete",
        key="models_delete",
        on_click=delete,
        args=(st.session_state.models_delete_choice,),
        help="Delete the LoRA file and its library entry.",
        width="stretch",
    )
else:
    st.caption("The library is empty.")

with st.expander("Upload a LoRA", expanded=not library, icon=":material/upload:"):
    st.file_uploader(
        "LoRA file",
        type=["safetensors"],
        key="models_file",
        help="A .safetensors LoRA; its base architecture is read from its tensors.",
    )
    st.text_input(
        "Name",
        key="models_name",
        max_chars=100,
        help="Letters, digits, '.', '_', '-'. Default: the file name.",
    )
    st.selectbox("Type", LORA_TYPES, key="models_type", help="Library type, used by the stacking rules.")
    st.text_input("Trigger words", key="models_triggers", help="Comma-separated words the LoRA responds to.")
    st.text_input("Description", key="models_description", max_chars=2000, help="Free text for the library.")
    st.toggle(
        "Replace a LoRA of the same name", key="models_overwrite", help="Otherwise a taken name is refused."
    )
    st.button(
        "Upload",
        type="primary",
        key="models_upload",
        on_click=upload,
        icon=":material/upload:",
        help="Upload into the library shared by every diffusion replica.",
    )
    ui.field_error(PAGE, "name", "params", "metadata")
ui.page_error(PAGE)
