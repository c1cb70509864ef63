"""A tiny anti-aliased JAX rasterizer for gray images: oriented boxes drawn by signed distance."""

import jax.numpy as jnp


def pixel_grid(h: int, w: int):
    """Pixel-centre coordinates in pixel units: (ys [h, w], xs [h, w]); y grows downward."""
    ys, xs = jnp.meshgrid(jnp.arange(h) + 0.5, jnp.arange(w) + 0.5, indexing="ij")
    return ys, xs


def box_coverage(h: int, w: int, center_xy, half_wh, angle):
    """Coverage in [0, 1] of an oriented box (1-pixel linear anti-aliasing).

    Args:
      center_xy: (x, y) in pixels; half_wh: (half width, half height); angle: rotation in radians
        (counter-clockwise on screen). Returns [h, w].
    """
    ys, xs = pixel_grid(h, w)
    dx, dy = xs - center_xy[0], ys - center_xy[1]
    c, s = jnp.cos(angle), jnp.sin(angle)
    u = c * dx - s * dy  # box-local coordinates (screen y is down, so flip sign of rotation in y)
    v = s * dx + c * dy
    d = jnp.maximum(jnp.abs(u) - half_wh[0], jnp.abs(v) - half_wh[1])
    return jnp.clip(0.5 - d, 0.0, 1.0)


def draw_box(img, center_xy, half_wh, angle, intensity):
    """Paints an oriented box of ``intensity`` over ``img`` [h, w] (alpha = coverage). Returns [h, w]."""
    cov = box_coverage(img.shape[0], img.shape[1], center_xy, half_wh, angle)
    return img * (1.0 - cov) + intensity * cov
