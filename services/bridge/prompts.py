"""Prompt building: trigger words and physical attributes merged in a fixed order; analysis answers split."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_ANALYSIS_INSTRUCTION", "Attributes", "build_prompt", "split_analysis"]

DEFAULT_ANALYSIS_INSTRUCTION = (
    "Analyze this image for image generation. Describe its composition, subject, clothing, setting, "
    "art style and mood. Be concise. End with one line that starts with 'Prompt:' and gives a prompt "
    "that would generate a similar image."
)

# GLM-4.5V wraps its final answer in these markers.
_BOX_MARKERS = re.compile(r"<\|(?:begin|end)_of_box\|>")
_PROMPT_LINE = re.compile(r"^\s*\**\s*prompt\s*\**\s*:\s*\**\s*(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Attributes:
    """Physical attributes of the subject (PhysicalAttributes in the proto); empty fields add nothing."""

    hair_color: str = ""
    hair_style: str = ""
    eye_color: str = ""
    skin_tone: str = ""
    body_type: str = ""
    age: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def phrases(self) -> list[str]:
        """The attribute phrases: the fields in declaration order, then `extra` in key order."""
        fixed = [
            (self.hair_color, "{} hair"),
            (self.hair_style, "{} hairstyle"),
            (self.eye_color, "{} eyes"),
            (self.skin_tone, "{} skin"),
            (self.body_type, "{} build"),
            (self.age, "{}"),
        ]
        phrases = [template.format(value.strip()) for value, template in fixed if value.strip()]
        phrases += [
            f"{self.extra[key].strip()} {key.strip()}"
            for key in sorted(self.extra)
            if self.extra[key].strip()
        ]
        return phrases


def build_prompt(prompt: str, trigger_words: Iterable[str] = (), attributes: Attributes | None = None) -> str:
    """The prompt sent: `prompt`, then trigger words not already in it (each once), then attribute phrases.

    Joined with ", ". A trigger word already present in the prompt (case-insensitive, as a whole word)
    is not added again.
    """
    parts = [prompt.strip()]
    seen = {word.lower() for word in re.findall(r"[\w'-]+", prompt)}
    present = prompt.lower()
    for word in trigger_words:
        word = word.strip()
        key = word.lower()
        if not word or key in seen or re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", present):
            continue
        seen.add(key)
        parts.append(word)
    parts += (attributes or Attributes()).phrases()
    return ", ".join(parts)


def split_analysis(answer: str) -> tuple[str, str]:
    """(description, suggested prompt) from a vision model's answer.

    The suggestion is the text of the last line starting with "Prompt:"; that line is cut from the
    description. With no such line, the suggestion is the description itself.
    """
    lines = _BOX_MARKERS.sub("", answer).strip().splitlines()
    for index in range(len(lines) - 1, -1, -1):
        match = _PROMPT_LINE.match(lines[index])
        if match and match.group(1).strip():
            description = "\n".join(lines[:index] + lines[index + 1 :]).strip()
            return description, match.group(1).strip().strip("*\"' ")
    description = "\n".join(lines).strip()
    return description, description
