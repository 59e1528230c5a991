"""`python -m services.diffusion.fetch [MODELS_DIR]` (`make models`): download the production weights.

Needs a machine that reaches the Hugging Face hub (and `HF_TOKEN` for gated repos). Each component of
the production profile lands in its folder under the models folder (see profiles.py); files already
there are kept, so an interrupted run resumes. Not run in CI: tests use the tiny profile.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from services.diffusion.profiles import PRODUCTION, HubSource, ModelProfile
from services.diffusion.settings import DiffusionSettings

__all__ = ["fetch_profile"]

log = logging.getLogger(__name__)


def _target(profile: ModelProfile, models_dir: Path, component: str) -> Path:
    if component == "upscaler":
        return models_dir / profile.upscalers
    return profile.path(models_dir, component)


def fetch_profile(profile: ModelProfile, models_dir: Path, token: str | None = None) -> None:
    """Download every component of `profile` that has a hub source into `models_dir`."""
    from huggingface_hub import snapshot_download

    for component, source in profile.sources.items():
        target = _target(profile, models_dir, component)
        target.mkdir(parents=True, exist_ok=True)
        log.info("fetching %s from %s into %s", component, source.repo_id, target)
        _fetch(snapshot_download, source, target, token)
        if component == "upscaler":  # the file may sit in a subfolder of its repo
            for found in target.rglob(profile.upscaler):
                if found.parent != target:
                    shutil.move(found, target / profile.upscaler)


def _fetch(snapshot_download, source: HubSource, target: Path, token: str | None) -> None:
    snapshot_download(
        repo_id=source.repo_id,
        local_dir=target,
        allow_patterns=list(source.allow_patterns) or None,
        token=token,
    )


def main() -> None:
    settings = DiffusionSettings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "models_dir",
        nargs="?",
        type=Path,
        default=settings.models_dir,
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    token = settings.hf_token.get_secret_value() if settings.hf_token is not None else None
    fetch_profile(PRODUCTION, args.models_dir, token)
    print(f"production weights are in {args.models_dir}")


if __name__ == "__main__":
    main()
