"""The Upscale page under AppTest against a real in-process gateway (tiny profile)."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.ui.conftest import APP, FAST, png
from tilesmith import Client, UpscaleOptions


@pytest.fixture
def app(gateway_env) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def upload(at: AppTest, data: bytes, name: str = "sprite.png") -> None:
    for key, value in FAST.items():
        at.session_state[key] = value
    at.file_uploader(key="up_file").set_value((name, data, "image/png"))
    at.run()
    assert not at.exception, at.exception


def errors(at: AppTest) -> list[str]:
    return [element.value for element in at.error]


def test_defaults_and_tooltips(app):
    assert app.title[0].value == "Upscale"
    assert app.slider(key="up_strength").value == 0.35
    assert app.number_input(key="up_steps").value == 30
    assert app.number_input(key="up_cfg").value == 7.0
    assert app.number_input(key="up_seed").value == -1
    assert app.slider(key="up_ip_scale").value == 0.6
    assert app.selectbox(key="up_target").options == ["x2", "x4", "2K", "4K", "8K", "Custom"]
    assert app.button(key="up_all").disabled  # nothing uploaded yet
    for widget in [*app.slider, *app.number_input, *app.selectbox, *app.toggle, *app.text_area, *app.button]:
        assert widget.help, f"{widget.key or widget.label} has no help="
    assert not errors(app)


def test_upload_shows_grid_and_selection_from_state(app):
    upload(app, png(96, 80))
    assert "tiles of 64 px" in " ".join(c.value for c in app.caption)
    multiselect = app.multiselect(key="up_selected")
    assert len(multiselect.options) > 1
    # the grid is a custom component (an unknown element here): select tiles through session state
    app.session_state["up_selected"] = [1]
    app.run()
    assert app.subheader[0].value == "Tile 1"
    assert [b.label for b in app.button if b.key in ("up_tile_run", "up_tile_caption")] == [
        "Upscale this tile",
        "Caption this tile",
    ]


def test_drawn_region_joins_the_table_in_input_pixels_and_the_job(app, gateway_env):
    upload(app, png(96, 80, seed=6))
    # the drawer is a custom component (an unknown element here): seed its value through session state,
    # a drag on the image shown at 480x400 (5x the input), ending right and below it
    drag = {"x0": 250, "y0": 100, "x1": 50, "y1": 600, "shown_width": 480, "shown_height": 400}
    app.session_state["up_draw"] = {"drawn": {"id": 1, **drag}}
    app.run()
    assert not app.exception, app.exception
    table = app.data_editor(key="up_regions_editor").value
    assert table[["x", "y", "w", "h"]].values.tolist() == [[10, 20, 40, 60]]  # clamped to the 80 px height
    # a click (under 4x4 input pixels) adds nothing
    app.session_state["up_draw"] = {"drawn": {"id": 2, **drag, "x1": 260, "y1": 110}}
    app.run()
    assert len(app.data_editor(key="up_regions_editor").value) == 1
    app.button(key="up_selected_run").click().run()  # no tiles selected: only the region is re-drawn
    assert not errors(app)
    with Client(gateway_env) as client:
        regions = client.get_job(app.session_state["up_job"]).spec.upscale.regions
    assert [(r.rect.x, r.rect.y, r.rect.width, r.rect.height) for r in regions] == [(10, 20, 40, 60)]
    # Upscale All: every tile first, then the region over them.
    app.button(key="up_all").click().run()
    assert not errors(app)
    with Client(gateway_env) as client:
        job = client.get_job(app.session_state["up_job"])
        settings = UpscaleOptions.from_settings(job.spec.upscale.settings)
        layout = client.plan_grid(job.spec.upscale.image_id, settings)
    assert list(job.spec.upscale.selected_tiles) == list(range(len(layout.plan.tiles)))
    assert len(job.spec.upscale.regions) == 1


def test_invalid_setting_is_shown_next_to_its_control(app):
    upload(app, png(48, 40, seed=3))
    app.number_input(key="up_tile").set_value(100)  # not a multiple of 8
    app.run()
    app.button(key="up_all").click().run()
    assert not app.exception
    messages = errors(app)
    assert len(messages) == 1
    assert "tile_size" in messages[0]
    assert "Traceback" not in messages[0]


def test_caption_all_without_captioning_is_readable(app):
    upload(app, png(48, 40, seed=4))
    app.button(key="up_caption_all").click().run()
    assert not app.exception
    assert any("Service unavailable" in message for message in errors(app))


def test_presets_save_load_delete(app):
    app.text_area(key="up_prompt").input("ink wash").run()
    app.slider(key="up_strength").set_value(0.6).run()
    app.text_input(key="up_preset_name").input("ink ui test").run()
    app.button(key="up_preset_save").click().run()
    assert "ink ui test" in app.selectbox(key="up_preset_choice").options
    app.text_area(key="up_prompt").input("something else").run()
    app.slider(key="up_strength").set_value(0.2).run()
    app.selectbox(key="up_preset_choice").set_value("ink ui test").run()
    app.button(key="up_preset_load").click().run()
    assert app.text_area(key="up_prompt").value == "ink wash"
    assert app.slider(key="up_strength").value == pytest.approx(0.6)
    app.button(key="up_preset_delete").click().run()
    assert "ink ui test" not in app.selectbox(key="up_preset_choice").options
    assert not errors(app)


def wait_for_result(at: AppTest, within: float = 60.0) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        at.run()
        assert not at.exception, at.exception
        if any(s.value == "Result" for s in at.subheader):
            return
        time.sleep(0.3)
    raise AssertionError(f"no result within {within} s; errors: {errors(at)}")


def test_upscale_all_runs_to_completion_and_feeds_back(app):
    upload(app, png(48, 40, channels=4, seed=5))  # RGBA: alpha kept
    app.button(key="up_all").click().run()
    assert not errors(app)
    wait_for_result(app)
    captions = [caption for image in app.image for caption in image.captions]
    assert "Before · 48x40" in captions
    assert "After · 96x80" in captions
    assert any(b.label == "Download PNG" for b in app.get("download_button"))
    assert any(s.value.startswith("Job ") for s in app.success)
    app.button(key="up_result_reuse").click().run()
    assert app.session_state["up_input"]["name"].startswith("result ")
    assert app.session_state["up_job"] is None
    assert not errors(app)
