"""Jobs: the queue (queued / running, with progress and Cancel) and the history (each job's parameters and
LoRAs, its result, re-run from the stored spec, delete)."""

from __future__ import annotations

import json

import streamlit as st
from google.protobuf.json_format import MessageToDict

from tilesmith.v1 import gateway_pb2
from ui import components as ui
from ui._gateway import gateway

PAGE = "jobs"


def state_name(job: gateway_pb2.Job) -> str:
    return gateway_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()


def kind_name(job: gateway_pb2.Job) -> str:
    return gateway_pb2.JobKind.Name(job.kind).removeprefix("JOB_KIND_").lower()


def spec_loras(job: gateway_pb2.Job) -> str:
    """The job's LoRAs as text: "name:weight" (a REFERENCE job's are URLs)."""
    spec = job.spec
    match spec.WhichOneof("spec"):
        case "upscale":
            loras = [(lora.name, lora.weight) for lora in spec.upscale.settings.loras]
        case "generate":
            loras = [(lora.name, lora.weight) for lora in spec.generate.settings.loras]
        case "transform":
            loras = [(lora.name, lora.weight) for lora in spec.transform.loras]
        case "reference":
            loras = [(lora.url, lora.weight) for lora in spec.reference.loras]
        case _:
            loras = []
    return ", ".join(f"{name}:{weight:g}" for name, weight in loras)


def rerun(job_id: str) -> None:
    ui.clear_error(PAGE)
    job = ui.attempt(PAGE, gateway().client.get_job, job_id)
    if job is not None:
        again = ui.attempt(PAGE, gateway().client.submit, job.spec)
        if again is not None:
            st.session_state.jobs_focus = again.id
            st.toast(f"Re-submitted as {again.id}", icon=":material/replay:")


def cancel(job_id: str) -> None:
    ui.clear_error(PAGE)
    ui.attempt(PAGE, gateway().client.cancel_job, job_id)


def delete(job_id: str) -> None:
    ui.clear_error(PAGE)
    ui.attempt(PAGE, gateway().client.delete_job, job_id)
    st.session_state.jobs_focus = None


st.title("Jobs")


@st.fragment(run_every=2.0)
def queue() -> None:
    st.subheader("Queue", divider="gray")
    active = (
        ui.read(PAGE, lambda: list(gateway().client.list_jobs(["queued", "running"], page_size=100))) or []
    )
    if not active:
        st.caption("No queued or running jobs.")
    for job in active:
        text = f"{job.id} · {kind_name(job)} · {state_name(job)}"
        progress = job.progress
        if job.state == gateway_pb2.JOB_STATE_QUEUED:
            text += f" · {progress.queue_position} ahead"
        elif progress.tiles_total:
            text += f" · tiles {progress.tiles_done}/{progress.tiles_total}"
        if progress.HasField("eta_seconds"):
            text += f" · ETA {progress.eta_seconds:.0f} s"
        bar_col, cancel_col = st.columns([5, 1], vertical_alignment="bottom")
        bar_col.progress(min(1.0, progress.fraction), text=text)
        cancel_col.button(
            "Cancel",
            key=f"jobs_cancel_{job.id}",
            on_click=cancel,
            args=(job.id,),
            help="Cancel this job; its backend calls stop at their next step.",
        )


queue()

st.subheader("History", divider="gray")
jobs = ui.read(PAGE, lambda: list(gateway().client.list_jobs(page_size=100))) or []
rows = [
    {
        "id": job.id,
        "kind": kind_name(job),
        "state": state_name(job),
        "label": job.spec.label,
        "created": job.created_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
        "seed": job.seed,
        "LoRAs": spec_loras(job),
        "size": f"{job.result.size.width}x{job.result.size.height}" if job.result.size.width else "",
        "error": job.error.message,
    }
    for job in jobs
]
if rows:
    st.dataframe(rows, hide_index=True, width="stretch")
else:
    st.caption("No jobs yet.")
ids = [job.id for job in jobs]
if st.session_state.get("jobs_focus") not in ids:
    st.session_state.jobs_focus = ids[0] if ids else None
st.selectbox("Job", ids, key="jobs_focus", help="The job whose parameters and result to show.")
focus = next((job for job in jobs if job.id == st.session_state.jobs_focus), None)
if focus is not None:
    rerun_col, delete_col, cancel_col = st.columns(3)
    rerun_col.button(
        "Re-run",
        key="jobs_rerun",
        on_click=rerun,
        args=(focus.id,),
        icon=":material/replay:",
        width="stretch",
        help="Submit this job's stored spec again (same seed: same pixels).",
    )
    ended = focus.state not in (gateway_pb2.JOB_STATE_QUEUED, gateway_pb2.JOB_STATE_RUNNING)
    delete_col.button(
        "Delete",
        key="jobs_delete",
        on_click=delete,
        args=(focus.id,),
        disabled=not ended,
        width="stretch",
        help="Delete the job, its events and its result (only once it has ended).",
    )
    cancel_col.button(
        "Cancel",
        key="jobs_cancel",
        on_click=cancel,
        args=(focus.id,),
        disabled=ended,
        width="stretch",
        help="Cancel the job while it is queued or running.",
    )
    ui.page_error(PAGE)
    params_col, result_col = st.columns(2)
    with params_col:
        st.caption("Parameters (the stored spec)")
        st.code(json.dumps(MessageToDict(focus.spec), indent=2), language="json")
        if focus.error.message:
            st.error(ui.readable(ui.job_error_of(focus)), icon=":material/error:")
    if focus.state == gateway_pb2.JOB_STATE_SUCCEEDED:
        with result_col:
            data = ui.read(PAGE, ui.job_result_png, focus.id)
            if data is not None:
                st.image(ui.open_image(data), caption=f"Result of {focus.id}", width="stretch")
                ui.result_actions(focus.id, key="jobs_result")
else:
    ui.page_error(PAGE)
