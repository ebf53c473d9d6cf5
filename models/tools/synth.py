#!/usr/bin/python3
"""Synthetic data for the default models: grayscale chest-like scans and road scenes.

Pure numpy (plus zlib for PNG; Pillow for --video's JPEG frames), so it runs with /usr/bin/python3 at test time
without torch. The same seed always gives the same images, bit for bit.

  # 60 held-out scans (PNG, 8-bit gray, 128x128) + ground_truth.json
  /usr/bin/python3 models/tools/synth.py scan --seed 9001 --count 60 --out /tmp/scans
  # the same scans as 16-bit DICOM (CR, 12 bits stored, window in the header)
  /usr/bin/python3 models/tools/synth.py scan --seed 9001 --count 60 --out /tmp/dcm --dicom
  # 60 scans at 192x192, each with its segmentation mask (scan_0000_mask.png:
  # 8-bit gray, pixel = SEGMENT_LABELS index: 0 background, 1 nodule, 2 effusion)
  /usr/bin/python3 models/tools/synth.py scan --seed 9001 --count 60 --out /tmp/seg \
      --width 192 --masks
  # 40 road frames (PNG, RGB, 480x320) + ground_truth.json
  /usr/bin/python3 models/tools/synth.py road --seed 9002 --count 40 --out /tmp/road
  # the same frames also as an MJPEG AVI clip for rectifier-client stream (Pillow JPEG)
  /usr/bin/python3 models/tools/synth.py road --seed 9002 --count 40 --out /tmp/road --video drive.avi

ground_truth.json:
  scan: {"task": "classification", "labels": [...], "samples":
         [{"file": "scan_0000.png", "class_id": 1, "label": "nodule"}, ...]}
        (--masks: each sample also has "mask": "scan_0000_mask.png", and the
        top level "segment_labels": ["background", "nodule", "effusion"])
  road: {"task": "detection", "labels": [...], "width": 480, "height": 320, "samples":
         [{"file": "road_0000.png", "objects": [{"class_id": 0, "label": "car",
           "box": [x1, y1, x2, y2]}, ...]}, ...]}   (boxes in image pixels,
           x2/y2 exclusive, i.e. the box covers x1 <= x < x2)

Training scripts import this module (render_scan, render_scan_with_mask,
render_road) and draw
training samples from other seeds; tests draw held-out ones from theirs.
"""
import argparse
import json
import os
import struct
import sys
import zlib

import numpy as np

SCAN_LABELS = ["normal", "nodule", "effusion"]
SEGMENT_LABELS = ["background", "nodule", "effusion"]  # mask pixel values
ROAD_LABELS = ["car", "pedestrian", "traffic_sign"]
SCAN_SIZE = 128
ROAD_WIDTH, ROAD_HEIGHT = 480, 320


# ---------------------------------------------------------------- helpers
def _smooth_noise(rng, h, w, cells):
    """Low-frequency noise in [-1, 1]: a coarse random grid, bilinearly upsampled."""
    grid = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1)).astype(np.float32)
    return _interp_matrix(h, cells) @ grid @ _interp_matrix(w, cells).T


def _interp_matrix(n, cells):
    """(n, cells + 1) linear-interpolation weights from grid nodes to n samples."""
    pos = np.linspace(0, cells, n, endpoint=False)
    i0 = pos.astype(int)
    f = (pos - i0).astype(np.float32)
    m = np.zeros((n, cells + 1), dtype=np.float32)
    m[np.arange(n), i0] = 1 - f
    m[np.arange(n), i0 + 1] = f
    return m


def _ellipse(yy, xx, cy, cx, ry, rx):
    """Normalised radius^2 of each pixel in an axis-aligned ellipse (< 1 inside)."""
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2


def _soft(d2, edge=0.15):
    """1 inside an ellipse (d2 < 1), 0 outside, with a soft rim."""
    return np.clip((1.0 + edge - d2) / (2 * edge), 0.0, 1.0)


# ---------------------------------------------------------------- scans
def render_scan(rng, label, size=SCAN_SIZE):
    """One 8-bit grayscale chest-like slice (size x size) of class `label` (index).

    0 normal: body ellipse, two dark lungs, heart, spine, texture and noise;
    1 nodule: plus a bright round blob (radius 2.5-6 px) inside one lung;
    2 effusion: plus fluid-dense region filling the base of one lung,
      with a meniscus rising towards the lateral wall.
    """
    return render_scan_with_mask(rng, label, size)[0]


def render_scan_with_mask(rng, label, size=SCAN_SIZE):
    """render_scan's image and its mask: (img, mask), both uint8 size x size.

    mask holds SEGMENT_LABELS indices: 0 background, 1 nodule (where the
    drawn blob > 0.5), 2 effusion (where the fluid > 0.5). Consumes `rng`
    exactly as render_scan does, so the image is the same bytes.
    """
    seg = np.zeros((size, size), dtype=np.uint8)  # the mask
    s = size / 128.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.full((size, size), rng.uniform(0.02, 0.08))
    cy, cx = size / 2 + rng.uniform(-4, 4) * s, size / 2 + rng.uniform(-4, 4) * s
    body_ry, body_rx = rng.uniform(42, 52) * s, rng.uniform(52, 60) * s
    body = _soft(_ellipse(yy, xx, cy, cx, body_ry, body_rx), 0.05)
    tissue = rng.uniform(0.45, 0.6)
    img += body * (tissue - img)
    # Lungs.
    lungs = []
    for side in (-1, 1):
        lcx = cx + side * rng.uniform(21, 26) * s
        lcy = cy - rng.uniform(0, 5) * s
        lry, lrx = rng.uniform(28, 34) * s, rng.uniform(15, 19) * s
        lungs.append((lcy, lcx, lry, lrx, side))
        air = rng.uniform(0.12, 0.22)
        mask = _soft(_ellipse(yy, xx, lcy, lcx, lry, lrx), 0.12)
        img += mask * (air - img)
    lung_mask = np.zeros_like(img)
    for lcy, lcx, lry, lrx, _ in lungs:
        lung_mask = np.maximum(lung_mask, _soft(_ellipse(yy, xx, lcy, lcx, lry, lrx), 0.12))
    # Vessel-like texture inside the lungs, and small bright specks in every class.
    img += lung_mask * 0.06 * _smooth_noise(rng, size, size, 12)
    for _ in range(rng.integers(3, 9)):
        lcy, lcx, lry, lrx, _ = lungs[rng.integers(2)]
        py, px = lcy + rng.uniform(-0.8, 0.8) * lry, lcx + rng.uniform(-0.7, 0.7) * lrx
        r = rng.uniform(0.8, 1.5) * s
        img += 0.12 * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * r * r)) * lung_mask
    # Heart (slightly left of centre, lower), spine.
    hcx, hcy = cx - rng.uniform(2, 8) * s, cy + rng.uniform(4, 12) * s
    heart = _soft(_ellipse(yy, xx, hcy, hcx, rng.uniform(14, 20) * s, rng.uniform(10, 15) * s), 0.1)
    img += heart * (rng.uniform(0.55, 0.68) - img)
    spine = _soft(_ellipse(yy, xx, cy + body_ry - 9 * s, cx, 6 * s, 7 * s), 0.1)
    img += spine * (rng.uniform(0.8, 0.9) - img)

    if label == 1:  # nodule
        lcy, lcx, lry, lrx, _ = lungs[rng.integers(2)]
        while True:
            u, v = rng.uniform(-1, 1, 2)
            if u * u + v * v < 0.55:
                break
        py, px = lcy + u * lry, lcx + v * lrx
        r = rng.uniform(2.5, 6.0) * s
        amp = rng.uniform(0.3, 0.5)
        blob = np.exp(-(((yy - py) ** 2 + (xx - px) ** 2) / (r * r)) ** 2)
        img += amp * blob
        seg[blob > 0.5] = 1
    elif label == 2:  # effusion
        lcy, lcx, lry, lrx, side = lungs[rng.integers(2)]
        depth = rng.uniform(0.25, 0.55) * 2 * lry  # fluid height at the lateral wall
        base = lcy + lry  # lung base
        lateral = np.clip(side * (xx - lcx) / lrx, -1, 1)  # +1 at the outer wall
        level = base - depth * (0.65 + 0.35 * lateral)  # meniscus
        fluid = np.clip((yy - level) / (2.0 * s), 0, 1) * _soft(
            _ellipse(yy, xx, lcy, lcx, lry, lrx), 0.12)
        img += fluid * (rng.uniform(0.42, 0.55) - img)
        seg[fluid > 0.5] = 2

    img += 0.03 * _smooth_noise(rng, size, size, 32)
    img += rng.normal(0, rng.uniform(0.015, 0.035), img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8), seg


def _scan_classes(rng, count):
    labels = np.arange(count) % len(SCAN_LABELS)
    rng.shuffle(labels)
    return [int(label) for label in labels]


def scan_samples(seed, count, size=SCAN_SIZE):
    """Yields (image, class_id), classes in a balanced shuffled order."""
    rng = np.random.default_rng(seed)
    for label in _scan_classes(rng, count):
        yield render_scan(rng, label, size), label


def segment_samples(seed, count, size=SCAN_SIZE):
    """Yields (image, mask, class_id): scan_samples' images (same seed, same
    bytes) with their SEGMENT_LABELS masks."""
    rng = np.random.default_rng(seed)
    for label in _scan_classes(rng, count):
        img, mask = render_scan_with_mask(rng, label, size)
        yield img, mask, label


# ---------------------------------------------------------------- road scenes
def _box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _fill_rect(img, x1, y1, x2, y2, color):
    h, w = img.shape[:2]
    x1, y1 = max(0, int(round(x1))), max(0, int(round(y1)))
    x2, y2 = min(w, int(round(x2))), min(h, int(round(y2)))
    if x2 > x1 and y2 > y1:
        img[y1:y2, x1:x2] = color


def _fill_ellipse(img, cy, cx, ry, rx, color):
    h, w = img.shape[:2]
    y1, y2 = max(0, int(cy - ry)), min(h, int(cy + ry) + 2)
    x1, x2 = max(0, int(cx - rx)), min(w, int(cx + rx) + 2)
    if y2 <= y1 or x2 <= x1:
        return
    yy, xx = np.mgrid[y1:y2, x1:x2].astype(np.float64) + 0.5
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    img[y1:y2, x1:x2][inside] = color


def _fill_polygon(img, pts, color):
    """Convex polygon, points in order (x, y)."""
    h, w = img.shape[:2]
    pts = np.asarray(pts, dtype=np.float64)
    x1, x2 = max(0, int(pts[:, 0].min())), min(w, int(pts[:, 0].max()) + 2)
    y1, y2 = max(0, int(pts[:, 1].min())), min(h, int(pts[:, 1].max()) + 2)
    if y2 <= y1 or x2 <= x1:
        return
    yy, xx = np.mgrid[y1:y2, x1:x2].astype(np.float64) + 0.5
    inside = np.ones(yy.shape, dtype=bool)
    n = len(pts)
    area = sum(pts[i, 0] * pts[(i + 1) % n, 1] - pts[(i + 1) % n, 0] * pts[i, 1] for i in range(n))
    sign = 1.0 if area > 0 else -1.0
    for i in range(n):
        (ax, ay), (bx, by) = pts[i], pts[(i + 1) % n]
        inside &= sign * ((bx - ax) * (yy - ay) - (by - ay) * (xx - ax)) >= 0
    img[y1:y2, x1:x2][inside] = color


def _vivid(rng):
    """A saturated colour that is not road-grey, grass-green or sky-blue."""
    palettes = [(200, 30, 30), (230, 200, 40), (240, 240, 240), (30, 30, 35), (40, 60, 200),
                (230, 120, 30), (120, 30, 140), (20, 120, 120)]
    base = np.array(palettes[rng.integers(len(palettes))], dtype=np.float64)
    return np.clip(base + rng.uniform(-25, 25, 3), 0, 255)


def _draw_car(img, rng, x1, y1, x2, y2):
    w, h = x2 - x1, y2 - y1
    body = _vivid(rng)
    # Cabin on top (narrower), body below, wheels, windows, lights.
    cab_in = rng.uniform(0.12, 0.22) * w
    _fill_polygon(img, [(x1 + cab_in, y1), (x2 - cab_in, y1), (x2 - 0.04 * w, y1 + 0.42 * h),
                        (x1 + 0.04 * w, y1 + 0.42 * h)], body)
    _fill_rect(img, x1, y1 + 0.4 * h, x2, y2 - 0.12 * h, body)
    glass = np.array([60, 80, 100]) + rng.uniform(-15, 15, 3)
    _fill_polygon(img, [(x1 + cab_in + 0.05 * w, y1 + 0.07 * h),
                        (x2 - cab_in - 0.05 * w, y1 + 0.07 * h),
                        (x2 - 0.12 * w, y1 + 0.38 * h), (x1 + 0.12 * w, y1 + 0.38 * h)], glass)
    wheel = (20, 20, 20)
    _fill_rect(img, x1 + 0.06 * w, y2 - 0.2 * h, x1 + 0.28 * w, y2, wheel)
    _fill_rect(img, x2 - 0.28 * w, y2 - 0.2 * h, x2 - 0.06 * w, y2, wheel)
    light = (250, 240, 180) if rng.uniform() < 0.5 else (210, 30, 30)
    _fill_rect(img, x1 + 0.04 * w, y1 + 0.5 * h, x1 + 0.16 * w, y1 + 0.6 * h, light)
    _fill_rect(img, x2 - 0.16 * w, y1 + 0.5 * h, x2 - 0.04 * w, y1 + 0.6 * h, light)


def _draw_pedestrian(img, rng, x1, y1, x2, y2):
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    skin = np.array([224, 172, 135]) * rng.uniform(0.55, 1.05)
    head_r = 0.085 * h
    _fill_ellipse(img, y1 + head_r, cx, head_r, min(head_r, w / 2), np.clip(skin, 0, 255))
    shirt = _vivid(rng)
    _fill_rect(img, x1 + 0.12 * w, y1 + 2 * head_r, x2 - 0.12 * w, y1 + 0.55 * h, shirt)
    arm = 0.12 * w
    _fill_rect(img, x1, y1 + 2.2 * head_r, x1 + arm + 0.12 * w, y1 + 0.5 * h, shirt)
    _fill_rect(img, x2 - arm - 0.12 * w, y1 + 2.2 * head_r, x2, y1 + 0.5 * h, shirt)
    legs = np.array([40, 40, 70]) + rng.uniform(-20, 40, 3)
    stride = rng.uniform(0.0, 0.12) * w
    _fill_rect(img, x1 + 0.18 * w - stride, y1 + 0.55 * h, cx - 0.04 * w, y2, legs)
    _fill_rect(img, cx + 0.04 * w, y1 + 0.55 * h, x2 - 0.18 * w + stride, y2, legs)


def _draw_sign(img, rng, x1, y1, x2, y2):
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    kind = rng.integers(4)
    if kind == 0:  # prohibition: red ring, white disc
        _fill_ellipse(img, cy, cx, h / 2, w / 2, (210, 25, 30))
        _fill_ellipse(img, cy, cx, h * 0.33, w * 0.33, (245, 245, 245))
        _fill_rect(img, cx - 0.2 * w, cy - 0.06 * h, cx + 0.2 * w, cy + 0.06 * h, (30, 30, 30))
    elif kind == 1:  # mandatory: blue disc, white arrow
        _fill_ellipse(img, cy, cx, h / 2, w / 2, (30, 70, 200))
        _fill_rect(img, cx - 0.07 * w, cy - 0.25 * h, cx + 0.07 * w, cy + 0.28 * h, (245, 245, 245))
    elif kind == 2:  # warning: red triangle, white inside
        _fill_polygon(img, [(cx, y1), (x2, y2), (x1, y2)], (210, 25, 30))
        _fill_polygon(img, [(cx, y1 + 0.3 * h), (x2 - 0.2 * w, y2 - 0.1 * h),
                            (x1 + 0.2 * w, y2 - 0.1 * h)], (245, 245, 245))
    else:  # priority: yellow diamond with white border
        _fill_polygon(img, [(cx, y1), (x2, cy), (cx, y2), (x1, cy)], (245, 245, 245))
        _fill_polygon(img, [(cx, y1 + 0.18 * h), (x2 - 0.18 * w, cy), (cx, y2 - 0.18 * h),
                            (x1 + 0.18 * w, cy)], (240, 190, 20))


def render_road(rng, width=ROAD_WIDTH, height=ROAD_HEIGHT, max_objects=5):
    """One RGB road scene (height x width x 3, uint8) and its objects.

    Returns (image, objects) with objects = [(class_id, (x1, y1, x2, y2)), ...]
    in pixels (x2/y2 exclusive). 0-`max_objects` objects; sizes follow the
    perspective (larger lower in the frame); far objects are drawn first so
    near ones occlude them; overlaps are limited to IoU <= 0.25.
    """
    W, H = width, height
    f32 = np.float32
    yy = np.arange(H, dtype=f32)[:, None]
    xx = np.arange(W, dtype=f32)[None, :]
    img = np.empty((H, W, 3), dtype=f32)
    horizon = H * rng.uniform(0.33, 0.45)
    hz = int(np.ceil(horizon))
    # Sky: vertical gradient with a random tint, a few soft clouds.
    top = (np.array([70, 120, 200]) + rng.uniform(-30, 30, 3)).astype(f32)
    low = (np.array([180, 200, 225]) + rng.uniform(-25, 25, 3)).astype(f32)
    t = (yy[:hz] / max(horizon, 1))[..., None]
    img[:hz] = top * (1 - t) + low * t + 18 * _smooth_noise(rng, hz, W, 6)[..., None]
    # Ground: grass or dry field with texture.
    ground = np.array([70, 120, 50]) if rng.uniform() < 0.7 else np.array([150, 130, 90])
    ground = (ground + rng.uniform(-20, 20, 3)).astype(f32)
    img[hz:] = ground + 25 * _smooth_noise(rng, H - hz, W, 24)[..., None]
    # Road: trapezoid to a vanishing point.
    vpx = W / 2 + rng.uniform(-0.12, 0.12) * W
    left_bottom, right_bottom = W * rng.uniform(-0.1, 0.2), W * rng.uniform(0.8, 1.1)
    frac = np.clip((yy - horizon) / (H - horizon), 0, 1)
    road_l = vpx + (left_bottom - vpx) * frac
    road_r = vpx + (right_bottom - vpx) * frac
    grey = rng.uniform(70, 115)
    noise = 10 * _smooth_noise(rng, H - hz, W, 40)
    tint = rng.uniform(-6, 6, 3).astype(f32)
    sub = img[hz:]
    road = (xx >= road_l[hz:]) & (xx < road_r[hz:])
    sub[road] = (grey + noise[road])[:, None] + tint
    # Lane markings: solid edges, dashed centre.
    line_w = 1.0 + 5.0 * frac
    white = np.array([235, 235, 225], dtype=f32)
    for edge in (road_l + 2 * line_w, road_r - 2 * line_w):
        m = (np.abs(xx - edge) < line_w / 2) & (yy > horizon + 2)
        img[m] = white
    centre = vpx + ((left_bottom + right_bottom) / 2 - vpx) * frac
    phase = rng.uniform(0, 1)
    dash = (np.mod(np.sqrt(np.maximum(frac, 0)) * 9 + phase, 1.0) < 0.5)
    m = (np.abs(xx - centre) < line_w / 2) & dash & (yy > horizon + 2)
    img[m] = white

    # Objects, planned first (boxes), then drawn far to near.
    count = int(rng.integers(0, max_objects + 1))
    planned = []
    tries = 0
    while len(planned) < count and tries < 200:
        tries += 1
        cls = int(rng.integers(3))
        bottom = rng.uniform(horizon + 8, H - 2)
        depth = (bottom - horizon) / (H - horizon)  # 0 far .. 1 near
        rl = vpx + (left_bottom - vpx) * depth
        rr = vpx + (right_bottom - vpx) * depth
        if cls == 0:  # car, on the road
            w = 22 + depth * rng.uniform(110, 170)
            h = w * rng.uniform(0.6, 0.8)
            cx = rng.uniform(rl + w * 0.3, rr - w * 0.3) if rr - rl > 0.6 * w else (rl + rr) / 2
            box = (cx - w / 2, bottom - h, cx + w / 2, bottom)
        elif cls == 1:  # pedestrian, anywhere on the ground
            h = 22 + depth * rng.uniform(80, 130)
            w = h * rng.uniform(0.32, 0.42)
            cx = rng.uniform(w, W - w)
            box = (cx - w / 2, bottom - h, cx + w / 2, bottom)
        else:  # sign plate on a pole, beside the road
            s = 12 + depth * rng.uniform(30, 50)
            pole = s * rng.uniform(1.2, 2.0)
            side = rl - rng.uniform(0.5, 2.0) * s if rng.uniform() < 0.5 else rr + rng.uniform(
                0.5, 2.0) * s
            box = (side - s / 2, bottom - pole - s, side + s / 2, bottom - pole)
        x1, y1, x2, y2 = (float(round(v)) for v in box)
        if x1 < 0 or y1 < 0 or x2 > W or y2 > H or x2 - x1 < 6 or y2 - y1 < 6:
            continue
        box = (x1, y1, x2, y2)
        if any(_box_iou(box, p[1]) > 0.25 for p in planned):
            continue
        planned.append((cls, box, bottom))
    planned.sort(key=lambda p: p[2])
    for cls, (x1, y1, x2, y2), bottom in planned:
        if cls == 0:
            _draw_car(img, rng, x1, y1, x2, y2)
        elif cls == 1:
            _draw_pedestrian(img, rng, x1, y1, x2, y2)
        else:
            cx = (x1 + x2) / 2
            pw = max(1.5, 0.1 * (x2 - x1))
            _fill_rect(img, cx - pw / 2, y2, cx + pw / 2, bottom, (120, 120, 125))
            _draw_sign(img, rng, x1, y1, x2, y2)
    img += np.float32(rng.uniform(2, 6)) * rng.standard_normal(img.shape, dtype=np.float32)
    img *= np.float32(rng.uniform(0.75, 1.15))  # exposure
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out, [(cls, box) for cls, box, _ in planned]


def road_samples(seed, count, width=ROAD_WIDTH, height=ROAD_HEIGHT):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield render_road(rng, width, height)


# ---------------------------------------------------------------- output
def write_png(path, image):
    """8-bit gray (H, W) or RGB (H, W, 3) PNG, no filter, zlib level 6."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    color_type = 0 if image.ndim == 2 else 2
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data +
                struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def write_mjpeg_avi(path, frames, fps):
    """An MJPEG AVI (RIFF 'AVI ' with one 'MJPG' video stream and an idx1
    index) of RGB uint8 frames [h, w, 3], each JPEG-encoded by Pillow: what
    OpenCV's own AVI reader (rectifier-client stream) plays without FFmpeg."""
    import io

    from PIL import Image

    h, w = frames[0].shape[:2]
    jpegs = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())

    def chunk(tag, data):
        return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")

    def riff_list(kind, data):
        return b"LIST" + struct.pack("<I", len(data) + 4) + kind + data

    largest = max(len(j) for j in jpegs)
    avih = struct.pack("<14I", int(1e6 / fps), largest * int(fps), 0, 0x10, len(jpegs), 0, 1,
                       largest, w, h, 0, 0, 0, 0)
    strh = b"vidsMJPG" + struct.pack("<IHHIIIIIIIIhhhh", 0, 0, 0, 0, 1, int(fps), 0, len(jpegs),
                                     largest, 0xFFFFFFFF, 0, 0, 0, w, h)
    strf = struct.pack("<IiiHH4sIiiII", 40, w, h, 1, 24, b"MJPG", w * h * 3, 0, 0, 0, 0)
    header = riff_list(b"hdrl", chunk(b"avih", avih) +
                       riff_list(b"strl", chunk(b"strh", strh) + chunk(b"strf", strf)))
    movi, index, offset = b"", b"", 4  # idx1 offsets count from the 'movi' tag
    for jpeg in jpegs:
        index += b"00dc" + struct.pack("<III", 0x10, offset, len(jpeg))
        data = chunk(b"00dc", jpeg)
        movi += data
        offset += len(data)
    body = b"AVI " + header + riff_list(b"movi", movi) + chunk(b"idx1", index)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def _dicom_element(group, element, vr, value):
    """One explicit-VR little-endian data element, its value padded to even length."""
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    head = struct.pack("<HH", group, element) + vr
    if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def write_dicom(path, img, index, seed):
    """A 16-bit (12 bits stored) MONOCHROME2 CR image, DICOM Part 10, explicit VR LE.

    Stored values are the 8-bit scan x 16 (0..4080), with a window (centre
    2048, width 4096) and an identity rescale in the header, the way a
    digitised chest X-ray arrives. Not for clinical use: synthetic data.
    """
    h, w = img.shape[:2]
    sop_class = b"1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    sop_instance = f"2.25.{seed}{index:06d}".encode()
    meta = b"".join([
        _dicom_element(0x0002, 0x0001, b"OB", b"\0\1"),
        _dicom_element(0x0002, 0x0002, b"UI", sop_class),
        _dicom_element(0x0002, 0x0003, b"UI", sop_instance),
        _dicom_element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1"),  # explicit VR LE
        _dicom_element(0x0002, 0x0012, b"UI", b"2.25.1742"),
    ])
    pixels = (img.astype(np.uint16) * 16).astype("<u2").tobytes()
    data = b"".join([
        _dicom_element(0x0008, 0x0016, b"UI", sop_class),
        _dicom_element(0x0008, 0x0018, b"UI", sop_instance),
        _dicom_element(0x0008, 0x0060, b"CS", b"CR"),
        _dicom_element(0x0010, 0x0010, b"PN", b"SYNTHETIC^SCAN"),
        _dicom_element(0x0028, 0x0002, b"US", struct.pack("<H", 1)),
        _dicom_element(0x0028, 0x0004, b"CS", b"MONOCHROME2"),
        _dicom_element(0x0028, 0x0010, b"US", struct.pack("<H", h)),
        _dicom_element(0x0028, 0x0011, b"US", struct.pack("<H", w)),
        _dicom_element(0x0028, 0x0100, b"US", struct.pack("<H", 16)),
        _dicom_element(0x0028, 0x0101, b"US", struct.pack("<H", 12)),
        _dicom_element(0x0028, 0x0102, b"US", struct.pack("<H", 11)),
        _dicom_element(0x0028, 0x0103, b"US", struct.pack("<H", 0)),
        _dicom_element(0x0028, 0x1050, b"DS", b"2048"),
        _dicom_element(0x0028, 0x1051, b"DS", b"4096"),
        _dicom_element(0x0028, 0x1052, b"DS", b"0"),
        _dicom_element(0x0028, 0x1053, b"DS", b"1"),
        _dicom_element(0x7FE0, 0x0010, b"OW", pixels),
    ])
    group_length = _dicom_element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta)))
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + group_length + meta + data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["scan", "road"])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--out", required=True, help="folder (created)")
    parser.add_argument("--width", type=int, default=0,
                        help="road frame width (default 480) / scan side (default 128)")
    parser.add_argument("--height", type=int, default=0, help="road frame height (default 320)")
    parser.add_argument("--video", metavar="NAME.avi",
                        help="road: also write the frames, in order, as an MJPEG AVI in --out "
                             "(for rectifier-client stream)")
    parser.add_argument("--fps", type=float, default=10, help="--video frame rate")
    parser.add_argument("--dicom", action="store_true",
                        help="scan: write 16-bit DICOM files (scan_NNNN.dcm) instead of PNG")
    parser.add_argument("--masks", action="store_true",
                        help="scan: also write each scan's segmentation mask as scan_NNNN_mask.png "
                             "(8-bit gray, pixel = class id: 0 background, 1 nodule, 2 effusion)")
    args = parser.parse_args()
    if args.video and args.kind != "road":
        parser.error("--video is for road frames")
    if args.dicom and args.kind != "scan":
        parser.error("--dicom applies to scan")
    if args.masks and args.kind != "scan":
        parser.error("--masks applies to scan")
    if args.count < 1:
        parser.error("--count must be >= 1")
    os.makedirs(args.out, exist_ok=True)
    samples = []
    if args.kind == "scan":
        size = args.width or SCAN_SIZE
        for i, (img, mask, label) in enumerate(segment_samples(args.seed, args.count, size)):
            name = f"scan_{i:04d}.{'dcm' if args.dicom else 'png'}"
            if args.dicom:
                write_dicom(os.path.join(args.out, name), img, i, args.seed)
            else:
                write_png(os.path.join(args.out, name), img)
            samples.append({"file": name, "class_id": label, "label": SCAN_LABELS[label]})
            if args.masks:
                mask_name = f"scan_{i:04d}_mask.png"
                write_png(os.path.join(args.out, mask_name), mask)
                samples[-1]["mask"] = mask_name
        truth = {"task": "classification", "labels": SCAN_LABELS, "width": size, "height": size,
                 "seed": args.seed, "samples": samples}
        if args.masks:
            truth["segment_labels"] = SEGMENT_LABELS
    else:
        w, h = args.width or ROAD_WIDTH, args.height or ROAD_HEIGHT
        frames = []
        for i, (img, objects) in enumerate(road_samples(args.seed, args.count, w, h)):
            name = f"road_{i:04d}.png"
            write_png(os.path.join(args.out, name), img)
            if args.video:
                frames.append(img)
            samples.append({"file": name, "objects": [
                {"class_id": c, "label": ROAD_LABELS[c], "box": list(b)} for c, b in objects]})
        truth = {"task": "detection", "labels": ROAD_LABELS, "width": w, "height": h,
                 "seed": args.seed, "samples": samples}
        if args.video:
            write_mjpeg_avi(os.path.join(args.out, args.video), frames, args.fps)
            truth["video"] = {"file": args.video, "fps": args.fps, "frames": len(frames)}
    with open(os.path.join(args.out, "ground_truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    print(f"{args.kind}: wrote {len(samples)} samples and ground_truth.json to {args.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
