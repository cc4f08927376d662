"""Sampling faces from trained generators, latent walks, and (later) export."""
from .config import GenerateConfig, InterpolateConfig
from .generator import FaceGenerator, load_generator, resolve_checkpoint, save_generator
from .interpolate import latent_walk, save_animation, slerp

__all__ = ["FaceGenerator", "GenerateConfig", "InterpolateConfig", "latent_walk", "load_generator", "resolve_checkpoint", "save_animation", "save_generator", "slerp"]
