"""The Streamlit entry point: `streamlit run ui/app.py` (TILESMITH_ADDRESS / TILESMITH_TOKEN say where the
gateway is; both are read here, on the server, and never sent to the browser)."""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run ui/app.py` puts ui/ on sys.path, not the repository root the pages import `ui` from.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from ui import components as ui  # noqa: E402
from ui._gateway import connection, gateway  # noqa: E402

_VIEWS = Path(__file__).parent / "views"


def main() -> None:
    st.set_page_config(page_title="Tilesmith", page_icon=":material/grid_view:", layout="wide")
    pages = [
        st.Page(_VIEWS / "upscale.py", title="Upscale", icon=":material/auto_awesome:", default=True),
        st.Page(_VIEWS / "generate.py", title="Generate", icon=":material/brush:"),
        st.Page(_VIEWS / "transform.py", title="Transform", icon=":material/transform:"),
        st.Page(_VIEWS / "reference.py", title="Reference", icon=":material/photo_camera:"),
        st.Page(_VIEWS / "jobs.py", title="Jobs", icon=":material/list_alt:"),
        st.Page(_VIEWS / "models.py", title="Models", icon=":material/neurology:"),
    ]
    page = st.navigation(pages)
    with st.sidebar:
        st.caption(f"Gateway: {connection().address}")
        for key in ("up_job", "gen_job", "tf_job", "ref_job"):
            job_id = st.session_state.get(key)
            if job_id:
                st.caption(ui.status_line(gateway().watch(job_id)))
    page.run()


main()
