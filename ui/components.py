"""Pieces shared by the pages: readable gateway errors placed next to their control, the clickable
tile grid, the region drawer, the live job status, the LoRA stack editor and image helpers.

Errors: `attempt(page, fn, ...)` runs a gateway call; a `tilesmith.errors` exception is kept in session
state instead of escaping as a traceback. Each control calls `field_error(page, prefix, ...)` right
below itself and shows the error whose InvalidArgument `.field` starts with one of its prefixes;
`page_error(page)` (next to the page's actions) shows whatever no control claimed.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st
from PIL import Image

from tilesmith import errors
from tilesmith.v1 import common_pb2, gateway_pb2
from ui._gateway import JobWatch, gateway

T = TypeVar("T")

_ERRORS = "ui_errors"
_CLAIMED = "ui_errors_claimed"
_KIND_TITLES = {
    errors.InvalidArgument: "Invalid value",
    errors.NotFound: "Not found",
    errors.AlreadyExists: "Already exists",
    errors.FailedPrecondition: "Not possible right now",
    errors.ResourceExhausted: "Too large or too busy",
    errors.Unavailable: "Service unavailable",
    errors.Cancelled: "Cancelled",
    errors.DeadlineExceeded: "Timed out",
    errors.Unauthenticated: "Not authorised",
    errors.Internal: "Gateway error",
}


# --- Errors -------------------------------------------------------------------------------------------


def readable(error: BaseException) -> str:
    """One line a person can act on: what kind of problem, the field, the gateway's message."""
    if isinstance(error, errors.TilesmithError):
        title = next((text for cls, text in _KIND_TITLES.items() if isinstance(error, cls)), "Error")
        where = f" ({error.field})" if isinstance(error, errors.InvalidArgument) else ""
        request_id = getattr(error, "request_id", None)
        suffix = f" — request id {request_id}" if request_id else ""
        return f"{title}{where}: {error.message}{suffix}"
    return f"Unexpected error: {error}"


def attempt(page: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run a gateway call for `page`; on failure remember the error for `field_error` / `page_error`
    (until the next action clears it with `clear_error`)."""
    try:
        return fn(*args, **kwargs)
    except errors.TilesmithError as exc:
        set_error(page, exc)
    except Exception as exc:  # never a traceback in the browser; the server log has it
        set_error(page, exc)
    return None


def read(page: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run a gateway read for drawing `page`; a failure is shown by this run's `page_error` only."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # never a traceback in the browser
        st.session_state.setdefault(_ERRORS, {})[f"{page}#read"] = exc
    return None


def set_error(page: str, error: BaseException) -> None:
    st.session_state.setdefault(_ERRORS, {})[page] = error


def clear_error(page: str) -> None:
    st.session_state.setdefault(_ERRORS, {}).pop(page, None)


def current_error(page: str) -> BaseException | None:
    return st.session_state.get(_ERRORS, {}).get(page)


def field_error(page: str, *prefixes: str) -> None:
    """Show the page's InvalidArgument here when its field starts with one of `prefixes`."""
    error = current_error(page)
    if isinstance(error, errors.InvalidArgument) and any(error.field.startswith(p) for p in prefixes):
        st.error(readable(error), icon=":material/error:")
        st.session_state.setdefault(_CLAIMED, set()).add(page)


def page_error(page: str) -> None:
    """Show the page's error unless a control already showed it, and this run's failed reads."""
    error = current_error(page)
    claimed = st.session_state.setdefault(_CLAIMED, set())
    if error is not None and page not in claimed:
        st.error(readable(error), icon=":material/error:")
    claimed.discard(page)
    failed_read = st.session_state.setdefault(_ERRORS, {}).pop(f"{page}#read", None)
    if failed_read is not None:
        st.error(readable(failed_read), icon=":material/error:")


# --- Images -------------------------------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return (
        image
        if image.mode in ("RGB", "RGBA")
        else image.convert("RGBA" if "A" in image.getbands() else "RGB")
    )


@st.cache_data(show_spinner=False, max_entries=32)
def job_result_png(job_id: str) -> bytes:
    """A finished job's final image, PNG as stored."""
    return gateway().client.get_result(job_id, encoding="png").data


# --- The clickable tile grid ----------------------------------------------------------------------------

_GRID_JS = """
export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  let img = parentElement.querySelector("img.tile-grid");
  if (!img) {
    img = document.createElement("img");
    img.className = "tile-grid";
    img.alt = "Tile grid: click a tile to select it";
    parentElement.appendChild(img);
  }
  img.src = data.src;
  img.onclick = (event) => {
    const box = img.getBoundingClientRect();
    const x = ((event.clientX - box.left) * data.width) / box.width;
    const y = ((event.clientY - box.top) * data.height) / box.height;
    let best = -1;
    let bestDistance = Infinity;
    for (const [index, tx, ty, tw, th] of data.tiles) {
      if (x >= tx && x < tx + tw && y >= ty && y < ty + th) {
        const distance = (x - tx - tw / 2) ** 2 + (y - ty - th / 2) ** 2;
        if (distance < bestDistance) { bestDistance = distance; best = index; }
      }
    }
    if (best >= 0) setTriggerValue("clicked", best);
  };
}
"""
_GRID_CSS = "img.tile-grid { width: 100%; cursor: crosshair; border-radius: 0.5rem; display: block; }"
_tile_grid = st.components.v2.component("tilesmith.tile_grid", js=_GRID_JS, css=_GRID_CSS)


def tile_grid(overview_png: bytes, layout: gateway_pb2.GridLayout, *, key: str) -> int | None:
    """Show the RenderGrid overview; returns the index of the tile clicked in this run, if any."""
    overview = Image.open(io.BytesIO(overview_png))
    scale = overview.width / max(1, layout.working_size.width)
    tiles = [
        [t.index, t.rect.x * scale, t.rect.y * scale, t.rect.width * scale, t.rect.height * scale]
        for t in layout.plan.tiles
    ]
    data = {
        "src": "data:image/png;base64," + base64.b64encode(overview_png).decode("ascii"),
        "width": overview.width,
        "height": overview.height,
        "tiles": tiles,
    }
    result = _tile_grid(data=data, key=key, on_clicked_change=lambda: None)
    clicked = getattr(result, "clicked", None) if result is not None else None
    return int(clicked) if clicked is not None else None


def tile_rect_in_input(layout: gateway_pb2.GridLayout, index: int) -> tuple[int, int, int, int]:
    """A first-pass tile's rect mapped from working pixels back to input pixels (x0, y0, x1, y1)."""
    rect = layout.plan.tiles[index].rect
    sx = layout.input_size.width / max(1, layout.working_size.width)
    sy = layout.input_size.height / max(1, layout.working_size.height)
    return (
        int(rect.x * sx),
        int(rect.y * sy),
        max(int(rect.x * sx) + 1, round((rect.x + rect.width) * sx)),
        max(int(rect.y * sy) + 1, round((rect.y + rect.height) * sy)),
    )


# --- The region drawer -----------------------------------------------------------------------------------

_DRAW_JS = """
export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  let frame = parentElement.querySelector("div.region-draw");
  if (!frame) {
    frame = document.createElement("div");
    frame.className = "region-draw";
    const img = document.createElement("img");
    img.alt = "Input image: drag a rectangle to add a region";
    frame.appendChild(img);
    parentElement.appendChild(frame);
  }
  frame.querySelector("img").src = data.src;
  frame.querySelectorAll(".region-box").forEach((box) => box.remove());
  data.regions.forEach(([x, y, w, h], index) => {
    const box = document.createElement("div");
    box.className = "region-box";
    box.textContent = String(index);
    box.style.left = `${(100 * x) / data.width}%`;
    box.style.top = `${(100 * y) / data.height}%`;
    box.style.width = `${(100 * w) / data.width}%`;
    box.style.height = `${(100 * h) / data.height}%`;
    frame.appendChild(box);
  });
  const point = (event) => {
    const box = frame.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top, width: box.width, height: box.height };
  };
  let start = null;
  let drawing = null;
  frame.onpointerdown = (event) => {
    event.preventDefault();
    frame.setPointerCapture(event.pointerId);
    start = point(event);
    drawing = document.createElement("div");
    drawing.className = "region-box drawing";
    frame.appendChild(drawing);
  };
  frame.onpointermove = (event) => {
    if (!start) return;
    const end = point(event);
    drawing.style.left = `${Math.min(start.x, end.x)}px`;
    drawing.style.top = `${Math.min(start.y, end.y)}px`;
    drawing.style.width = `${Math.abs(end.x - start.x)}px`;
    drawing.style.height = `${Math.abs(end.y - start.y)}px`;
  };
  frame.onpointerup = (event) => {
    if (!start) return;
    const end = point(event);
    setTriggerValue("drawn", {
      id: Date.now(), x0: start.x, y0: start.y, x1: end.x, y1: end.y,
      shown_width: end.width, shown_height: end.height,
    });
    start = null;
    drawing.remove();
  };
  frame.onpointercancel = () => { start = null; drawing?.remove(); };
}
"""
_DRAW_CSS = """
div.region-draw { position: relative; cursor: crosshair; user-select: none; touch-action: none; }
div.region-draw img { width: 100%; display: block; border-radius: 0.5rem; pointer-events: none; }
div.region-draw .region-box {
  position: absolute; box-sizing: border-box; pointer-events: none; padding: 0 3px;
  border: 2px solid #ff4b4b; background: rgba(255, 75, 75, 0.12);
  color: #fff; font: bold 12px sans-serif; text-shadow: 0 0 2px #000;
}
div.region-draw .region-box.drawing { border-style: dashed; }
"""
_region_draw = st.components.v2.component("tilesmith.region_draw", js=_DRAW_JS, css=_DRAW_CSS)
_DRAW_PREVIEW_SIDE = 1024
MIN_REGION_SIDE = 4


@st.cache_data(show_spinner=False, max_entries=8)
def _draw_preview(image_png: bytes) -> tuple[bytes, int, int]:
    """The input image scaled to fit the drawer (PNG) and the input's width and height."""
    image = open_image(image_png)
    size = image.size
    image.thumbnail((_DRAW_PREVIEW_SIDE, _DRAW_PREVIEW_SIDE))
    return png_bytes(image), *size


def region_drawer(
    image_png: bytes, regions: Sequence[tuple[int, int, int, int]], *, key: str
) -> tuple[int, int, int, int] | None:
    """Show the input image with `regions` (x, y, w, h in input pixels) outlined and numbered as in the
    regions table; returns the rectangle dragged out in this run, in input pixels, if any."""
    preview, width, height = _draw_preview(image_png)
    data = {
        "src": "data:image/png;base64," + base64.b64encode(preview).decode("ascii"),
        "width": width,
        "height": height,
        "regions": [list(region) for region in regions],
    }
    result = _region_draw(data=data, key=key, on_drawn_change=lambda: None)
    drag = getattr(result, "drawn", None) if result is not None else None
    # the run that adds a region reruns the page, which can see the same trigger value again
    if drag is None or st.session_state.get(f"{key}_seen") == drag["id"]:
        return None
    st.session_state[f"{key}_seen"] = drag["id"]
    return drag_rect_in_input(drag, width, height)


def drag_rect_in_input(drag: dict[str, float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """A drag in displayed pixels (x0, y0, x1, y1 on an image shown at shown_width x shown_height) as
    (x, y, w, h) in pixels of a `width` x `height` input, clamped inside it; None when it is smaller
    than MIN_REGION_SIDE input pixels on a side (a click, not a rectangle)."""
    sx, sy = width / drag["shown_width"], height / drag["shown_height"]
    x0, x1 = sorted(min(max(round(drag[k] * sx), 0), width) for k in ("x0", "x1"))
    y0, y1 = sorted(min(max(round(drag[k] * sy), 0), height) for k in ("y0", "y1"))
    if x1 - x0 < MIN_REGION_SIDE or y1 - y0 < MIN_REGION_SIDE:
        return None
    return x0, y0, x1 - x0, y1 - y0


# --- Live job status ------------------------------------------------------------------------------------


def status_line(watch: JobWatch) -> str:
    if watch.outcome is not None:
        return f"Job {watch.job_id}: {watch.outcome}"
    parts = [f"Job {watch.job_id}", watch.stage]
    if watch.stage == "queued" and watch.queue_position:
        parts.append(f"{watch.queue_position} ahead")
    if watch.tiles_total:
        parts.append(f"tiles {watch.tiles_done}/{watch.tiles_total}")
    if watch.detail:
        parts.append(watch.detail)
    if watch.eta_seconds is not None:
        parts.append(f"ETA {watch.eta_seconds:.0f} s")
    else:
        parts.append(f"{time.monotonic() - watch.started:.0f} s elapsed")
    return " · ".join(parts)


def job_status(page: str, job_key: str, *, on_end: Callable[[JobWatch], None] | None = None) -> None:
    """The live status bar of the job whose id is in session state `job_key`, refreshed every second:
    stage, tiles done / total, ETA, Cancel. The whole page reruns when tiles finish (so the grid turns
    green) and once when the job ends."""

    @st.fragment(run_every=1.0)
    def live() -> None:
        job_id = st.session_state.get(job_key)
        if not job_id:
            return
        watch = gateway().watch(job_id)
        seen_key = f"{job_key}_seen"
        seen = st.session_state.get(seen_key)
        now = (len(watch.processed), watch.outcome)
        if watch.outcome is None:
            st.progress(min(1.0, max(0.0, watch.fraction)), text=status_line(watch))
            if st.button(
                "Cancel", key=f"{job_key}_cancel", icon=":material/stop_circle:", help="Cancel this job"
            ):
                attempt(page, gateway().client.cancel_job, job_id)
        elif watch.outcome == "succeeded":
            st.success(status_line(watch), icon=":material/check_circle:")
        elif watch.outcome == "failed":
            st.error(readable(watch.error) if watch.error else status_line(watch), icon=":material/error:")
        else:
            st.warning(status_line(watch), icon=":material/cancel:")
        if seen != now:
            st.session_state[seen_key] = now
            if seen is not None and _in_fragment_rerun():
                if watch.outcome is not None and on_end is not None:
                    on_end(watch)
                st.rerun(scope="app")

    live()


def _in_fragment_rerun() -> bool:
    """True while only a fragment reruns (not the whole script), so `st.rerun(scope="app")` is needed."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    return bool(ctx and ctx.fragment_ids_this_run)


# --- LoRA stack -----------------------------------------------------------------------------------------


@st.cache_data(ttl=30, show_spinner=False)
def lora_library() -> list[dict[str, Any]]:
    """The LoRA library as plain rows (names and metadata stay text)."""
    response = gateway().client.list_loras()
    return [
        {
            "name": lora.name,
            "architecture": common_pb2.BaseArchitecture.Name(lora.base_architecture).removeprefix(
                "BASE_ARCHITECTURE_"
            ),
            "compatible": lora.compatible,
            "type": _lora_type(lora.metadata.type),
            "default weight": lora.metadata.default_weight
            if lora.metadata.HasField("default_weight")
            else 1.0,
            "min weight": lora.metadata.min_weight if lora.metadata.HasField("min_weight") else None,
            "max weight": lora.metadata.max_weight if lora.metadata.HasField("max_weight") else None,
            "trigger words": ", ".join(lora.metadata.trigger_words),
            "description": lora.metadata.description,
            "source": lora.metadata.source_url,
            "size (KB)": round(lora.size_bytes / 1024, 1),
            "loaded": lora.loaded,
        }
        for lora in response.loras
    ]


def _lora_type(value: int) -> str:
    from tilesmith.v1 import diffusion_pb2

    return diffusion_pb2.LoraType.Name(value).removeprefix("LORA_TYPE_").lower() if value else ""


def lora_stack(page: str, key: str, field_prefix: str) -> list[tuple[str, float]]:
    """Add / remove LoRAs with weights; trigger words shown as text. Returns [(name, weight)]."""
    stack: list[dict[str, Any]] = st.session_state.setdefault(key, [])
    library = read(page, lora_library) or []
    by_name = {row["name"]: row for row in library}
    available = [name for name in by_name if name not in {entry["name"] for entry in stack}]
    add_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
    choice = add_col.selectbox(
        "Add a LoRA",
        available,
        index=None,
        placeholder="No LoRAs in the library" if not library else "Choose a LoRA",
        key=f"{key}_choice",
        help="LoRAs from the library (Models page). Stacking rules are checked by the gateway.",
    )
    if button_col.button("Add", key=f"{key}_add", disabled=choice is None, help="Add it to the stack"):
        stack.append({"name": choice, "weight": float(by_name[choice]["default weight"] or 1.0)})
        st.rerun()
    for position, entry in enumerate(list(stack)):
        name_col, weight_col, remove_col = st.columns([3, 2, 1], vertical_alignment="bottom")
        name_col.text(entry["name"])
        entry["weight"] = weight_col.number_input(
            "Weight",
            min_value=-4.0,
            max_value=4.0,
            value=float(entry["weight"]),
            step=0.05,
            key=f"{key}_w_{entry['name']}",
            help="How strongly this LoRA applies; the library's weight range is enforced by the gateway.",
        )
        if remove_col.button("Remove", key=f"{key}_rm_{entry['name']}", help="Remove it from the stack"):
            stack.pop(position)
            st.rerun()
        triggers = by_name.get(entry["name"], {}).get("trigger words")
        if triggers:
            st.text(f"Trigger words: {triggers}")
    field_error(page, f"{field_prefix}loras")
    return [(entry["name"], float(entry["weight"])) for entry in stack]


@st.cache_data(ttl=60, show_spinner=False)
def model_summary() -> str:
    """The active checkpoint as a label, e.g. "tiny-sdxl (profile tiny, cpu)"."""
    from tilesmith.v1 import diffusion_pb2

    models = gateway().client.list_models()
    checkpoint = next(
        (m.name for m in models.models if m.kind == diffusion_pb2.MODEL_KIND_CHECKPOINT and m.is_default),
        next((m.name for m in models.models if m.kind == diffusion_pb2.MODEL_KIND_CHECKPOINT), "unknown"),
    )
    return f"{checkpoint} (profile {models.profile}, {models.device or 'device unknown'})"


def uploaded_image_id(page: str, key: str, upload: Any) -> str | None:
    """Upload a `st.file_uploader` file to the gateway once per content; returns its image id."""
    if upload is None:
        return None
    data = upload.getvalue()
    cache = st.session_state.setdefault("ui_uploads", {})
    digest = (key, len(data), hash(data))
    if digest not in cache:
        clear_error(page)
        image_id = attempt(page, gateway().client.upload_image, data, filename=upload.name)
        if image_id is None:
            return None
        cache[digest] = image_id
    return cache[digest]


def job_result(page: str, job_key: str, *, key: str, with_size: bool = False) -> None:
    """A page's job: its live status and, once it succeeded, the result with its actions."""
    job_status(page, job_key)
    job_id = st.session_state.get(job_key)
    if job_id and gateway().watch(job_id).outcome == "succeeded":
        data = read(page, job_result_png, job_id)
        if data is not None:
            image = open_image(data)
            caption = f"Result · {image.width}x{image.height}" if with_size else "Result"
            st.image(image, caption=caption, width="stretch")
            result_actions(job_id, key=key)
        page_error(page)


def result_actions(
    job_id: str, *, key: str, use_as_input: Callable[[str, bytes], None] | None = None
) -> None:
    """Download the finished job's result, and optionally feed it back as the next input."""
    data = job_result_png(job_id)
    st.download_button(
        "Download PNG",
        data,
        file_name=f"{job_id}.png",
        mime="image/png",
        key=f"{key}_dl",
        icon=":material/download:",
        help="The final image as stored by the gateway (PNG, alpha kept)",
    )
    if use_as_input is not None:
        job = gateway().client.get_job(job_id)
        st.button(
            "Use result as input",
            key=f"{key}_reuse",
            icon=":material/replay:",
            help="Run another pass on this result (no download and upload needed)",
            on_click=use_as_input,
            args=(job.result.image_id, data),
        )


def job_error_of(job: gateway_pb2.Job) -> errors.TilesmithError:
    """The exception a FAILED job stands for (the SDK's mapping)."""
    from tilesmith.client import job_error

    return job_error(job)


def short(items: Sequence[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit})" if len(items) > limit else "")
