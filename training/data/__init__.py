"""Synthetic text-video data: simple objects moving on plain or two-tone backgrounds, captions from a
grammar, prompt switches at known frames, and the per-frame ground truth a checker needs."""
from .scenes import (BACKGROUND_COLOURS, COLOURS, MOTIONS, SHAPES, SIZES, SPEEDS, Attributes, Clip,
                     caption, make_clip, sample_attributes, sample_switch, simulate)
from .render import render

__all__ = ["Attributes", "Clip", "COLOURS", "BACKGROUND_COLOURS", "SHAPES", "SIZES", "SPEEDS", "MOTIONS",
           "caption", "make_clip", "sample_attributes", "sample_switch", "simulate", "render"]
