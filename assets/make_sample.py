"""Draw `sample_sprite.png`, the demo's game asset: a 128x128 RGBA potion bottle on a transparent background.

Everything is drawn at 4x with Pillow and box-filtered down (premultiplied, so the transparent
background does not bleed into the edges), which gives anti-aliased outlines without a raster
library. No randomness: the same Pillow gives the same bytes.

    python assets/make_sample.py [OUT]     # default: assets/sample_sprite.png next to this script
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128
SUPERSAMPLE = 4
DEFAULT_OUT = Path(__file__).resolve().parent / "sample_sprite.png"

OUTLINE = (34, 24, 48, 255)
GLASS = (170, 215, 235, 110)
CORK_LIGHT = (196, 140, 88)
CORK_DARK = (120, 74, 40)
LIQUID_TOP = (255, 120, 200)
LIQUID_BOTTOM = (120, 30, 150)


def _gradient(size: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """An opaque RGBA square whose colour runs from `top` to `bottom`, darker towards the right."""
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    colour = (1 - t) * np.array(top) + t * np.array(bottom)
    shade = 1.0 - 0.35 * np.linspace(0.0, 1.0, size)[None, :, None] ** 2
    rgb = np.clip(colour * shade, 0, 255).astype(np.uint8)
    alpha = np.full((size, size, 1), 255, np.uint8)
    return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")


def _ellipse_band(size: int, box: list[int], top: int, bottom: int) -> Image.Image:
    """A mask of the ellipse in `box`, cut to the rows top..bottom."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse(box, fill=255)
    draw.rectangle([0, 0, size, top], fill=0)
    draw.rectangle([0, bottom, size, size], fill=0)
    return mask


def draw_sprite() -> Image.Image:
    """The sprite at its final size (RGBA)."""
    s = SIZE * SUPERSAMPLE

    def px(value: float) -> int:
        return round(value * SUPERSAMPLE)

    canvas = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)

    # 1. A soft shadow under the bottle.
    draw.ellipse([px(30), px(112), px(98), px(122)], fill=(20, 10, 30, 70))

    # 2. The glass: a round flask and its neck, outlined.
    body = [px(22), px(40), px(106), px(118)]
    neck = [px(51), px(18), px(77), px(50)]
    border = px(3)
    draw.ellipse(body, fill=OUTLINE)
    draw.rounded_rectangle(neck, radius=px(4), fill=OUTLINE)
    inner_body = [body[0] + border, body[1] + border, body[2] - border, body[3] - border]
    inner_neck = [neck[0] + border, neck[1] + border, neck[2] - border, neck[3] + border]
    draw.ellipse(inner_body, fill=GLASS)
    draw.rectangle(inner_neck, fill=GLASS)

    # 3. The potion: a gradient clipped to the flask below the surface line.
    surface = px(66)
    liquid = _ellipse_band(s, inner_body, surface, s)
    canvas.paste(_gradient(s, LIQUID_TOP, LIQUID_BOTTOM), (0, 0), liquid)
    meniscus = _ellipse_band(s, inner_body, surface, surface + px(3))  # a lighter band along the surface
    canvas.paste((255, 190, 235, 255), (0, 0), meniscus)

    # 4. Bubbles rising in the potion.
    for x, y, r in ((48, 92, 4.0), (60, 80, 2.5), (76, 98, 3.0), (84, 78, 2.0), (66, 104, 1.5)):
        draw.ellipse([px(x - r), px(y - r), px(x + r), px(y + r)], outline=(255, 220, 245, 230), width=px(1))

    # 5. The cork, with a lip ring below it.
    cork = [px(53), px(6), px(75), px(22)]
    draw.rounded_rectangle(cork, radius=px(3), fill=OUTLINE)
    cork_inner = [cork[0] + border, cork[1] + border, cork[2] - border, cork[3] - border]
    cork_mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(cork_mask).rounded_rectangle(cork_inner, radius=px(2), fill=255)
    canvas.paste(_gradient(s, CORK_LIGHT, CORK_DARK), (0, 0), cork_mask)
    for y in (11, 15):
        draw.line([px(57), px(y), px(71), px(y)], fill=(*CORK_DARK, 255), width=px(1))
    draw.rounded_rectangle([px(47), px(20), px(81), px(27)], radius=px(3), fill=OUTLINE)
    draw.rounded_rectangle([px(50), px(22), px(78), px(25)], radius=px(1), fill=(150, 200, 225, 255))

    # 6. Highlights: a curved glint on the glass, a stripe on the neck, and a sparkle.
    draw.arc([px(30), px(48), px(98), px(112)], start=195, end=250, fill=(255, 255, 255, 220), width=px(4))
    draw.ellipse([px(37), px(62), px(42), px(67)], fill=(255, 255, 255, 235))
    draw.rectangle([px(56), px(29), px(59), px(44)], fill=(255, 255, 255, 150))
    cx, cy = px(96), px(34)
    draw.polygon(
        [(cx, cy - px(8)), (cx + px(2), cy), (cx, cy + px(8)), (cx - px(2), cy)], fill=(255, 250, 200, 255)
    )
    draw.polygon(
        [(cx - px(8), cy), (cx, cy - px(2)), (cx + px(8), cy), (cx, cy + px(2))], fill=(255, 250, 200, 255)
    )

    # 7. Down to the final size, premultiplied so edges blend against transparency.
    return canvas.convert("RGBa").reduce(SUPERSAMPLE).convert("RGBA")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Draw the demo's sample sprite (deterministic).")
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    draw_sprite().save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
