"""The images, checked statically (no Docker engine runs here): deploy/docker/Dockerfile.{cpu,gpu}.

A small parser (line continuations, comments, JSON and shell forms) reads each Dockerfile into
stages; the tests check pinned bases, non-root users, no secrets in ARG/ENV, BuildKit secret mounts
for the hub token, entrypoints that are importable modules of this repo, and that the Deployments'
args name modules the images can run.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy.render import containers

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}
SECRET_WORDS = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: joined continuation lines, comments and parser directives dropped."""
    stages: list[Stage] = []
    logical = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)  # continuations (comment lines inside them too)
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, line
            stages.append(Stage(match[1], match[2]))
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, args))
    return stages


def exec_form(args: str) -> list[str]:
    """ENTRYPOINT / CMD arguments; only the exec (JSON) form is accepted (signals reach Python)."""
    value = json.loads(args)
    assert isinstance(value, list), args
    assert all(isinstance(item, str) for item in value), args
    return value


def env_pairs(args: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(args))


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request) -> tuple[str, list[Stage]]:
    return request.param, parse_dockerfile(DOCKERFILES[request.param].read_text())


def _final_stages(stages: list[Stage]) -> list[Stage]:
    """The runtime stages: those that set an ENTRYPOINT."""
    return [stage for stage in stages if stage.last("ENTRYPOINT")]


def test_parser_reads_stages_continuations_and_json_forms():
    stages = parse_dockerfile(
        "# syntax=docker/dockerfile:1.7\nFROM a:1.2 AS x\nRUN one \\\n    # inside\n    two\n"
        'FROM x AS y\nENTRYPOINT ["python", "-m"]\nCMD ["gateway"]\n'
    )
    assert [(s.base, s.name) for s in stages] == [("a:1.2", "x"), ("x", "y")]
    assert stages[0].all("RUN")[0].split() == ["one", "two"]
    assert exec_form(stages[1].last("CMD")) == ["gateway"]


def test_external_base_images_are_pinned_to_an_exact_version(dockerfile):
    _, stages = dockerfile
    names = {stage.name for stage in stages}
    external = [stage.base for stage in stages if stage.base not in names]
    assert external
    for image in external:
        reference, _, digest = image.partition("@")
        repository, _, tag = reference.rpartition(":")
        assert repository, image
        assert tag, image
        assert tag != "latest", image
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: tag is not an exact version"
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), image
        assert "$" not in image, "a base image chosen by a build ARG can escape the pin"


def test_runtime_stages_run_as_a_numeric_non_root_user(dockerfile):
    _, stages = dockerfile
    for stage in _final_stages(stages):
        user = stage.last("USER")
        assert user is not None, f"stage {stage.name} runs as root"
        uid = user.split(":")[0]
        assert uid.isdigit(), user  # numeric: runAsNonRoot can verify it
        assert int(uid) != 0, user
    manifests_uid = 10001
    assert all(stage.last("USER").split(":")[0] == str(manifests_uid) for stage in _final_stages(stages))


def test_no_secret_is_baked_into_a_layer(dockerfile):
    name, stages = dockerfile
    text = DOCKERFILES[name].read_text()
    for stage in stages:
        for args in stage.all("ARG"):
            assert not SECRET_WORDS.search(args.split("=")[0]), (
                f"ARG {args}: build args end up in the image history"
            )
        for args in stage.all("ENV"):
            for key, value in env_pairs(args).items():
                assert not SECRET_WORDS.search(key), f"ENV {key}"
                assert not re.search(r"(hf_|sk-|r8_)[A-Za-z0-9]{8,}", value)
    assert not re.search(r"(hf_|sk-|r8_)[A-Za-z0-9]{16,}", text)


def test_the_gpu_image_bakes_the_weights_with_the_token_as_a_buildkit_secret():
    stages = parse_dockerfile(DOCKERFILES["gpu"].read_text())
    runs = [args for stage in stages for args in stage.all("RUN")]
    (fetch,) = [run for run in runs if "services.diffusion.fetch" in run]
    assert "--mount=type=secret,id=hf_token" in fetch
    assert "/run/secrets/hf_token" in fetch
    # The token lives only in that RUN's environment: not exported, not written to a file.
    assert "export HF_TOKEN" not in fetch
    assert "> " not in fetch.split("services.diffusion.fetch")[0]
    assert importlib.util.find_spec("services.diffusion.fetch") is not None
    make = (ROOT / "Makefile").read_text()
    assert "-m services.diffusion.fetch" in make  # `make models` runs the same module
    final = _final_stages(stages)[-1]
    env = {k: v for args in final.all("ENV") for k, v in env_pairs(args).items()}
    assert (
        env["TILESMITH_DIFFUSION_MODELS_DIR"]
        == env["TILESMITH_CAPTIONING_MODELS_DIR"]
        == "/opt/tilesmith/models"
    )
    assert env["HF_HUB_OFFLINE"] == "1"
    assert any("torch==2.13.0" in run for run in runs)


def test_the_cpu_image_takes_cpu_torch_from_the_pinned_wheel_index():
    stages = parse_dockerfile(DOCKERFILES["cpu"].read_text())
    by_name = {stage.name: stage for stage in stages}
    (torch,) = [run for run in by_name["models-build"].all("RUN") if "torch==" in run]
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch
    assert "torch==2.13.0" in torch
    assert not any("torch" in run for run in by_name["slim-build"].all("RUN"))
    assert [stage.name for stage in _final_stages(stages)][-1] == "slim"  # the default target


def test_every_install_uses_the_projects_constraints(dockerfile):
    _, stages = dockerfile
    for stage in stages:
        for run in stage.all("RUN"):
            for command in re.split(r"&&|;", run):
                if (
                    re.search(r"\bpip install\b", command)
                    and "--no-deps" not in command
                    and "torch" not in command
                ):
                    assert "-c constraints.txt" in command, command


def _python_m_modules(stage: Stage) -> tuple[list[str], list[str]]:
    entrypoint = exec_form(stage.last("ENTRYPOINT"))
    cmd = exec_form(stage.last("CMD")) if stage.last("CMD") else []
    return entrypoint, cmd


def _assert_runnable_module(module: str, *, of_this_repo: bool = True) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"python -m {module}: no such module"
    assert spec.origin is not None, f"python -m {module}: no such module"
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None, f"python -m {module}: no __main__"
    if of_this_repo:  # not an installed namesake
        assert Path(spec.origin).resolve().is_relative_to(ROOT), f"{module} resolves to {spec.origin}"


def test_entrypoints_are_python_m_of_a_module_of_this_repo(dockerfile):
    _, stages = dockerfile
    for stage in _final_stages(stages):
        entrypoint, cmd = _python_m_modules(stage)
        assert entrypoint == ["python", "-m"]
        assert cmd
        assert cmd[0] in {
            "gateway",
            "services.tiling",
            "services.diffusion",
            "services.captioning",
            "services.bridge",
        }
        _assert_runnable_module(cmd[0])


def test_the_manifests_run_modules_the_images_can_run(rendered):
    images = {
        "tilesmith-cpu": "slim",
        "tilesmith-cpu-models": "models",
        "tilesmith-gpu": "runtime",
    }
    stages = {
        (path.name, stage.name): stage
        for path in DOCKERFILES.values()
        for stage in parse_dockerfile(path.read_text())
    }
    for overlay, objects in rendered.items():
        for _, container in containers(objects):
            image = container["image"].rsplit("/", 1)[-1].split(":")[0]
            dockerfile = "Dockerfile.gpu" if image == "tilesmith-gpu" else "Dockerfile.cpu"
            stage = stages[(dockerfile, images[image])]
            assert exec_form(stage.last("ENTRYPOINT")) == ["python", "-m"]
            module, *rest = container["args"]
            _assert_runnable_module(module, of_this_repo=module != "streamlit")
            if module == "streamlit":
                assert rest[:2] == ["run", "/app/ui/app.py"], f"{overlay}: {rest}"
            elif image == "tilesmith-cpu":
                assert module in {"gateway", "services.tiling", "services.bridge"}, (
                    f"{module} needs torch, which the slim image does not carry"
                )


def test_the_ui_script_the_ui_pods_run_exists():
    # The images copy ui/ to /app/ui; the ui Deployment runs `streamlit run /app/ui/app.py`.
    if not (ROOT / "ui" / "app.py").exists():
        pytest.skip("ui/app.py has not landed yet")
    assert (
        "st." in (ROOT / "ui" / "app.py").read_text() or "streamlit" in (ROOT / "ui" / "app.py").read_text()
    )


def test_the_slim_images_services_import_no_model_library():
    # gateway, tiling and bridge run on tilesmith-cpu (no torch): importing them must not need it.
    code = (
        "import sys, gateway.app, gateway.__main__, services.tiling.__main__, services.bridge.__main__\n"
        "heavy = {'torch', 'diffusers', 'transformers', 'spandrel'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_dockerignore_lets_in_only_what_the_images_install():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # an allow-list: nothing enters the context unless named
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "constraints.txt", "README.md", "sdk", "services", "gateway", "ui"}
    assert {"**/.env", "**/__pycache__"} <= set(lines)
    for stage in [s for path in DOCKERFILES.values() for s in parse_dockerfile(path.read_text())]:
        for copy in stage.all("COPY"):
            if "--from" in copy:
                continue
            sources = shlex.split(copy)[:-1]
            for source in sources:
                assert source == "." or source.rstrip("/") in allowed, copy
