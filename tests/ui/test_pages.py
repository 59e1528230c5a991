"""Generate, Transform, Reference, Jobs and Models under AppTest against a real in-process gateway."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from services.diffusion.tiny import default_cache_dir
from tests.ui.conftest import APP, png


@pytest.fixture
def app(gateway_env) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    return at


def open_page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"views/{name}.py").run()
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> list[str]:
    return [element.value for element in at.error]


def wait_for(at: AppTest, predicate, within: float = 60.0) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        at.run()
        assert not at.exception, at.exception
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"not met within {within} s; errors: {errors(at)}")


def test_every_page_renders_without_errors(app):
    for name, title in [
        ("generate", "Generate"),
        ("transform", "Transform"),
        ("reference", "Reference"),
        ("jobs", "Jobs"),
        ("models", "Models"),
    ]:
        open_page(app, name)
        assert app.title[0].value == title
        assert not errors(app), (name, errors(app))


def test_generate_runs_and_shows_the_result(app):
    open_page(app, "generate")
    app.text_area(key="gen_prompt").input("a lighthouse at dusk")
    app.number_input(key="gen_width").set_value(64)
    app.number_input(key="gen_height").set_value(64)
    app.number_input(key="gen_base_steps").set_value(2)
    app.number_input(key="gen_tile").set_value(64)
    app.number_input(key="gen_overlap").set_value(16)
    app.number_input(key="gen_steps").set_value(4)
    app.number_input(key="gen_seed").set_value(7)
    app.run()
    app.button(key="gen_run").click().run()
    assert not errors(app)
    wait_for(app, lambda: any(c.startswith("Result · ") for i in app.image for c in i.captions))


def test_generate_empty_prompt_error_sits_by_the_prompt(app):
    open_page(app, "generate")
    app.button(key="gen_run").click().run()
    assert not app.exception
    (message,) = errors(app)
    assert "generate.prompt" in message


def test_transform_upload_selects_modify_and_shows_the_gateway_error(app):
    open_page(app, "transform")
    app.segmented_control(key="tf_mode").set_value("copy").run()
    assert any("COPY" in info.value for info in app.info)
    app.file_uploader(key="tf_file").set_value(("in.png", png(), "image/png")).run()
    assert app.session_state["tf_mode"] == "modify"
    assert any("MODIFY" in info.value for info in app.info)
    app.slider(key="tf_strength").set_value(0.7)
    app.text_area(key="tf_prompt").input("watercolour").run()
    app.button(key="tf_run").click().run()
    assert not app.exception
    if app.session_state.get("tf_job", None):  # implemented by now
        wait_for(app, lambda: any(c == "Result" for i in app.image for c in i.captions))
    else:
        (message,) = errors(app)
        assert "Traceback" not in message
        assert ":" in message


def test_reference_analyze_and_generate_errors_are_readable(app):
    open_page(app, "reference")
    app.file_uploader(key="ref_file").set_value(("ref.png", png(seed=2), "image/png")).run()
    app.button(key="ref_analyze").click().run()
    assert not app.exception
    if "ref_analysis" in app.session_state:  # a bridge is configured
        app.button(key="ref_use").click().run()
        assert app.text_area(key="ref_prompt").value
    else:
        (message,) = errors(app)
        assert message.startswith("Service unavailable")
    app.text_area(key="ref_prompt").input("a knight")
    app.text_input(key="ref_hair_color").input("auburn").run()
    app.button(key="ref_run").click().run()
    assert not app.exception
    assert "ref_job" in app.session_state or all("Traceback" not in m for m in errors(app))


def test_jobs_history_rerun_and_delete(app, ui_stack):
    from tests.gateway.conftest import FAST
    from tilesmith import Client

    with Client(ui_stack.address) as client:
        job = client.upscale(png(32, 32, seed=9), FAST, label="history test")
        job.wait()
    open_page(app, "jobs")
    assert job.id in app.selectbox(key="jobs_focus").options
    app.selectbox(key="jobs_focus").set_value(job.id).run()
    assert any('"label": "history test"' in code.value for code in app.code)
    app.button(key="jobs_rerun").click().run()
    assert not errors(app)
    again = app.session_state["jobs_focus"]
    assert again != job.id
    wait_for(app, lambda: any(c == f"Result of {again}" for i in app.image for c in i.captions))
    app.selectbox(key="jobs_focus").set_value(job.id).run()
    app.button(key="jobs_delete").click().run()
    assert job.id not in app.selectbox(key="jobs_focus").options
    assert not errors(app)


def test_models_lists_uploads_and_deletes_loras(app):
    open_page(app, "models")
    names = [row for row in app.dataframe[1].value["name"]]
    assert "tiny-style" in names
    lora = (default_cache_dir() / "loras" / "tiny-style.safetensors").read_bytes()
    app.file_uploader(key="models_file").set_value(("<b>x</b>.safetensors", lora, "application/octet-stream"))
    app.text_input(key="models_name").input("ui-test-style")
    app.text_input(key="models_triggers").input("<script>alert(1)</script>, ink")
    app.run()
    app.button(key="models_upload").click().run()
    assert not errors(app), errors(app)
    table = app.dataframe[1].value
    row = table[table["name"] == "ui-test-style"].iloc[0]
    assert row["architecture"] == "SDXL"
    assert row["trigger words"] == "<script>alert(1)</script>, ink"
    assert not [m for m in app.markdown if "<script>" in m.value]  # text cells, never markup
    app.selectbox(key="models_delete_choice").set_value("ui-test-style").run()
    app.button(key="models_delete").click().run()
    assert "ui-test-style" not in list(app.dataframe[1].value["name"])
    # an SD1.5 LoRA is refused with a readable message next to the upload
    sd15 = (default_cache_dir() / "loras" / "sd15-style.safetensors").read_bytes()
    app.file_uploader(key="models_file").set_value(("sd15.safetensors", sd15, "application/octet-stream"))
    app.text_input(key="models_name").input("ui-test-sd15").run()
    app.button(key="models_upload").click().run()
    assert not app.exception
    assert len(errors(app)) == 1
    assert "Traceback" not in errors(app)[0]
