"""Noise schedulers (samplers) by name, as diffusion.proto's `Scheduler` enum lists them.

Each call gets a fresh scheduler made with `from_config` from the checkpoint's own scheduler config
(timestep spacing, beta schedule, prediction type), because schedulers keep per-run state (step index,
model-output history) and must never be shared between calls.

    name                    class                            options              A1111 / ComfyUI name
    dpmpp_2m_sde_karras     DPMSolverMultistepScheduler      sde-dpmsolver++,     DPM++ 2M SDE Karras
                                                             Karras sigmas        (the default)
    dpmpp_2m_karras         DPMSolverMultistepScheduler      dpmsolver++, Karras  DPM++ 2M Karras
    dpmpp_2m                DPMSolverMultistepScheduler      dpmsolver++          DPM++ 2M
    dpmpp_sde_karras        DPMSolverSDEScheduler            Karras sigmas        DPM++ SDE Karras
    euler                   EulerDiscreteScheduler                                Euler
    euler_ancestral         EulerAncestralDiscreteScheduler                       Euler a
    ddim                    DDIMScheduler                                         DDIM
    unipc                   UniPCMultistepScheduler                               UniPC

Reproducibility. The stochastic ones draw their noise from the generators the pipeline passes to
`step()` — one per tile — so a tile's noise does not depend on its neighbours in the batch. The
exception is `dpmpp_sde_karras`: diffusers' DPMSolverSDEScheduler draws from a Brownian tree seeded by
its config, never from the generators, so it is given one tree per tile seeded with the tile's seed.
It needs the `torchsde` package; without it the scheduler is refused (FailedPrecondition) rather than
replaced by another one.

Errors (`services.common.errors`): InvalidArgument on `sampling.scheduler` for an unknown name;
FailedPrecondition for `dpmpp_sde_karras` without torchsde.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from services.common.errors import FailedPrecondition, InvalidArgument

__all__ = ["DEFAULT_SCHEDULER", "SchedulerName", "make_scheduler", "parse_scheduler"]

# torchsde's Brownian tree takes seeds below 2**63; tile seeds are uint64.
_TREE_SEED_MODULUS = 2**63


class SchedulerName(StrEnum):
    """A scheduler's name. Member names are the proto's `tilesmith.v1.Scheduler` without its prefix:
    `diffusion_pb2.Scheduler.Name(value).removeprefix("SCHEDULER_")` converts (UNSPECIFIED means
    `DEFAULT_SCHEDULER`)."""

    DPMPP_2M_SDE_KARRAS = "dpmpp_2m_sde_karras"
    DPMPP_2M_KARRAS = "dpmpp_2m_karras"
    DPMPP_2M = "dpmpp_2m"
    DPMPP_SDE_KARRAS = "dpmpp_sde_karras"
    EULER = "euler"
    EULER_ANCESTRAL = "euler_ancestral"
    DDIM = "ddim"
    UNIPC = "unipc"


DEFAULT_SCHEDULER = SchedulerName.DPMPP_2M_SDE_KARRAS

_SCHEDULERS: dict[SchedulerName, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    SchedulerName.DPMPP_2M_SDE_KARRAS: (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    SchedulerName.DPMPP_2M_KARRAS: (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    SchedulerName.DPMPP_2M: (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    SchedulerName.DPMPP_SDE_KARRAS: (DPMSolverSDEScheduler, {"use_karras_sigmas": True}),
    SchedulerName.EULER: (EulerDiscreteScheduler, {}),
    SchedulerName.EULER_ANCESTRAL: (EulerAncestralDiscreteScheduler, {}),
    SchedulerName.DDIM: (DDIMScheduler, {}),
    SchedulerName.UNIPC: (UniPCMultistepScheduler, {}),
}


def parse_scheduler(name: str, field: str = "sampling.scheduler") -> SchedulerName:
    """The scheduler called `name`, or InvalidArgument on `field` listing the names allowed.

    Raises:
        InvalidArgument: an unknown name.
        FailedPrecondition: `dpmpp_sde_karras` without the torchsde package.
    """
    try:
        scheduler = SchedulerName(name)
    except ValueError:
        allowed = ", ".join(member.value for member in SchedulerName)
        raise InvalidArgument(field, f"{name!r} is not a scheduler; one of: {allowed}") from None
    if scheduler is SchedulerName.DPMPP_SDE_KARRAS and importlib.util.find_spec("torchsde") is None:
        raise FailedPrecondition(
            f"{field}: {scheduler.value} (DPMSolverSDEScheduler) needs the torchsde package, which this "
            "replica does not have; choose another scheduler, e.g. dpmpp_2m_sde_karras"
        )
    return scheduler


def make_scheduler(
    name: SchedulerName, base_config: Mapping[str, Any], seeds: Sequence[int]
) -> SchedulerMixin:
    """A new scheduler of kind `name` configured from the checkpoint's scheduler config.

    Args:
        name: From `parse_scheduler`.
        base_config: The checkpoint's scheduler config (`pipe.scheduler.config`).
        seeds: The batch's per-tile seeds, in batch order (only `dpmpp_sde_karras` uses them).
    """
    cls, options = _SCHEDULERS[name]
    if name is SchedulerName.DPMPP_SDE_KARRAS:
        options = {**options, "noise_sampler_seed": [seed % _TREE_SEED_MODULUS for seed in seeds]}
    return cls.from_config(base_config, **options)
