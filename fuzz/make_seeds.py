#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Standard library only (struct, zlib): every format is written by hand, so
the seeds are small, deterministic and reproducible on a bare machine. Each
corpus holds a few valid inputs per format plus the hostile inputs of issue
13 (files named hostile_*). Rerun after changing a generator:

    /usr/bin/python3 fuzz/make_seeds.py            # rewrites fuzz/corpus/
    /usr/bin/python3 fuzz/make_seeds.py --full-deflate /tmp/deflate_1gib.dcm

--full-deflate writes the complete deflated DICOM whose 1 GiB of zeros
compress to ~1 MB (not committed; the corpus holds the truncated variant).
See docs/FUZZING.md.
"""

import argparse
import json
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ---------------------------------------------------------------- PNG

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, bit_depth, color_type, rows, palette=None):
    """rows: raw scanline bytes without the filter byte."""
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if palette is not None:
        out += png_chunk(b"PLTE", palette)
    out += png_chunk(b"IDAT", zlib.compress(raw, 9))
    return out + png_chunk(b"IEND", b"")


def png_zero_rgba16(width, height):
    """16-bit RGBA of zeros, streamed through zlib (the image is 512 MiB raw)."""
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0))
    comp = zlib.compressobj(9)
    row = bytes(1 + width * 8)
    data = []
    for _ in range(height):
        data.append(comp.compress(row))
    data.append(comp.flush())
    stream = b"".join(data)
    for i in range(0, len(stream), 1 << 16):
        out += png_chunk(b"IDAT", stream[i:i + (1 << 16)])
    return out + png_chunk(b"IEND", b"")


def gradient(width, height, channels, maxval=255):
    return [[((x * 3 + y * 7 + c * 50) * (maxval // 255)) % (maxval + 1)
             for x in range(width) for c in range(channels)] for y in range(height)]


def png_seeds():
    g = gradient(16, 16, 1)
    rgb = gradient(16, 12, 3)
    g16 = gradient(8, 8, 1, 65535)
    rgba16 = gradient(8, 8, 4, 65535)
    ga = gradient(8, 8, 2)
    pal = bytes(v for i in range(4) for v in (i * 60, 255 - i * 60, 128))
    return {
        "gray8_16x16.png": png(16, 16, 8, 0, [bytes(r) for r in g]),
        "rgb8_16x12.png": png(16, 12, 8, 2, [bytes(r) for r in rgb]),
        "gray16_8x8.png": png(8, 8, 16, 0, [struct.pack(">8H", *r) for r in g16]),
        "rgba16_8x8.png": png(8, 8, 16, 6, [struct.pack(">32H", *r) for r in rgba16]),
        "gray_alpha8_8x8.png": png(8, 8, 8, 4, [bytes(r) for r in ga]),
        # 2-bit palette: 4 pixels per byte.
        "palette2_8x4.png": png(8, 4, 2, 3, [bytes([0x1B, 0xE4])] * 4, palette=pal),
    }


# ---------------------------------------------------------------- BMP, PNM

def bmp(width, height, bits, pixel_rows, palette=b"", top_down=False):
    row_bytes = (width * bits + 31) // 32 * 4
    body = b"".join(r + bytes(row_bytes - len(r)) for r in
                    (pixel_rows if top_down else reversed(pixel_rows)))
    offset = 14 + 40 + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, -height if top_down else height, 1, bits, 0,
                       len(body), 2835, 2835, len(palette) // 4 if palette else 0, 0)
    return header + info + palette + body


def bmp_seeds():
    rgb = gradient(5, 3, 3)
    g = gradient(4, 4, 1)
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    return {
        "bgr24_5x3.bmp": bmp(5, 3, 24, [bytes(r) for r in rgb]),
        "pal8_4x4_topdown.bmp": bmp(4, 4, 8, [bytes(r) for r in g], palette, top_down=True),
    }


def pnm_seeds():
    g = gradient(16, 16, 1)
    g16 = gradient(8, 8, 1, 65535)
    rgb = gradient(8, 8, 3)
    return {
        "gray8_16x16.pgm": b"P5\n16 16\n255\n" + b"".join(bytes(r) for r in g),
        "gray16_8x8.pgm": b"P5\n# 16-bit\n8 8\n65535\n" +
                          b"".join(struct.pack(">8H", *r) for r in g16),
        "rgb8_8x8.ppm": b"P6\n8 8\n255\n" + b"".join(bytes(r) for r in rgb),
        "ascii_4x4.pgm": b"P2\n4 4\n15\n" + b"".join(
            (" ".join(str(v % 16) for v in r) + "\n").encode() for r in gradient(4, 4, 1)),
    }


# ---------------------------------------------------------------- TIFF

def tiff(entries, strip):
    """entries: (tag, type, values) in the order given (duplicates allowed).
    type 3 = SHORT, 4 = LONG. Values that do not fit in 4 bytes go after the
    IFD; StripOffsets (273) is filled in."""
    n = len(entries)
    ifd_offset = 8
    extra_offset = ifd_offset + 2 + n * 12 + 4
    extra = b""
    # Lay out out-of-line values first, then the strip.
    laid = []
    for tag, typ, values in entries:
        size = {3: 2, 4: 4}[typ]
        fmt = {3: "H", 4: "I"}[typ]
        data = struct.pack("<%d%s" % (len(values), fmt), *values)
        if len(data) > 4:
            laid.append((tag, typ, len(values), extra_offset + len(extra), None))
            extra += data + (b"\0" if len(data) % 2 else b"")
        else:
            laid.append((tag, typ, len(values), None, data.ljust(4, b"\0")))
        del size
    strip_offset = extra_offset + len(extra)
    ifd = struct.pack("<H", n)
    for tag, typ, count, offset, inline in laid:
        if tag == 273:
            inline = struct.pack("<I", strip_offset)
        ifd += struct.pack("<HHI", tag, typ, count) + (inline if inline is not None
                                                        else struct.pack("<I", offset))
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_offset) + ifd + extra + strip


def tiff_basic(width, height, samples, bits, strip, compression=1, width_entries=None):
    photometric = 2 if samples == 3 else 1
    dims = width_entries or [(256, 4, [width]), (257, 4, [height])]
    entries = dims + [
        (258, 3, [bits] * samples),
        (259, 3, [compression]),
        (262, 3, [photometric]),
        (273, 4, [0]),
        (277, 3, [samples]),
        (278, 4, [height]),
        (279, 4, [len(strip)]),
        (284, 3, [1]),
    ]
    return tiff(entries, strip)


def packbits(data):
    out = b""
    for i in range(0, len(data), 128):
        chunk = data[i:i + 128]
        out += bytes([len(chunk) - 1]) + chunk
    return out


def tiff_seeds():
    g = b"".join(bytes(r) for r in gradient(16, 16, 1))
    rgb = b"".join(bytes(r) for r in gradient(8, 8, 3))
    g16 = b"".join(struct.pack("<8H", *r) for r in gradient(8, 8, 1, 65535))
    return {
        "gray8_16x16.tif": tiff_basic(16, 16, 1, 8, g),
        "rgb8_8x8.tif": tiff_basic(8, 8, 3, 8, rgb),
        "gray16_8x8.tif": tiff_basic(8, 8, 1, 16, g16),
        "rgb8_8x8_deflate.tif": tiff_basic(8, 8, 3, 8, zlib.compress(rgb), compression=8),
        "gray8_16x16_packbits.tif": tiff_basic(16, 16, 1, 8, packbits(g), compression=32773),
    }


def hostile_tiff():
    """ImageWidth/ImageLength twice: 20000x20000 first (what libtiff keeps),
    16x16 second (what a probe that keeps the last value sees); RGB, one
    16x16 strip."""
    rgb = b"".join(bytes(r) for r in gradient(16, 16, 3))
    dims = [(256, 4, [20000]), (257, 4, [20000]), (256, 4, [16]), (257, 4, [16])]
    return tiff_basic(16, 16, 3, 8, rgb, width_entries=dims)


# ---------------------------------------------------------------- JPEG

STD_DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
STD_DC_VALS = list(range(12))
STD_AC_BITS = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]
STD_AC_VALS = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
    0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52,
    0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25,
    0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45,
    0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64,
    0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83,
    0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
    0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6,
    0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3,
    0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8,
    0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA]


def huffman_codes(bits, vals):
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[vals[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


def segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


JFIF_APP0 = segment(0xE0, b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00")
DQT_ONES = segment(0xDB, b"\x00" + b"\x01" * 64)  # all-ones luminance table 0
DHT = (segment(0xC4, b"\x00" + bytes(STD_DC_BITS) + bytes(STD_DC_VALS)) +
       segment(0xC4, b"\x10" + bytes(STD_AC_BITS) + bytes(STD_AC_VALS)))


def sof0(width, height, components):
    """components: [(id, sampling byte)]; every one uses quant table 0."""
    payload = struct.pack(">BHHB", 8, height, width, len(components))
    for cid, sampling in components:
        payload += bytes([cid, sampling, 0])
    return segment(0xC0, payload)


def sos(component_ids):
    payload = bytes([len(component_ids)])
    for cid in component_ids:
        payload += bytes([cid, 0x00])  # DC table 0, AC table 0
    return segment(0xDA, payload + b"\x00\x3F\x00")


def entropy_dc_only(block_levels_per_component):
    """block_levels_per_component: per component a list of flat-block levels
    (0..255) in scan order, already interleaved by the caller as a list of
    (component, level). With an all-ones quant table a flat block's DC is
    8 * (level - 128); every AC is zero (one EOB)."""
    dc_codes = huffman_codes(STD_DC_BITS, STD_DC_VALS)
    ac_codes = huffman_codes(STD_AC_BITS, STD_AC_VALS)
    bits, nbits, out = 0, 0, bytearray()
    previous = {}

    def put(value, length):
        nonlocal bits, nbits
        for i in range(length - 1, -1, -1):
            bits = (bits << 1) | ((value >> i) & 1)
            nbits += 1
            if nbits == 8:
                out.append(bits)
                if bits == 0xFF:
                    out.append(0)
                bits, nbits = 0, 0

    for component, level in block_levels_per_component:
        dc = 8 * (level - 128)
        diff = dc - previous.get(component, 0)
        previous[component] = dc
        category = abs(diff).bit_length()
        put(*dc_codes[category])
        if category:
            put(diff if diff > 0 else diff + (1 << category) - 1, category)
        put(*ac_codes[0x00])  # EOB
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)
    return bytes(out)


def jpeg_gray(width, height, app=b""):
    bw, bh = (width + 7) // 8, (height + 7) // 8
    blocks = [(1, (bx * 40 + by * 70 + 20) % 256) for by in range(bh) for bx in range(bw)]
    return (b"\xFF\xD8" + JFIF_APP0 + app + DQT_ONES + sof0(width, height, [(1, 0x11)]) + DHT +
            sos([1]) + entropy_dc_only(blocks) + b"\xFF\xD9")


def jpeg_ycbcr420(width, height):
    """4:2:0: MCU = 4 luma blocks + Cb + Cr (16x16 pixels)."""
    mw, mh = (width + 15) // 16, (height + 15) // 16
    blocks = []
    for my in range(mh):
        for mx in range(mw):
            for i in range(4):
                blocks.append((1, (mx * 50 + my * 90 + i * 30 + 10) % 256))
            blocks.append((2, 100 + mx * 10))
            blocks.append((3, 160 - my * 10))
    return (b"\xFF\xD8" + JFIF_APP0 + DQT_ONES +
            sof0(width, height, [(1, 0x22), (2, 0x11), (3, 0x11)]) + DHT + sos([1, 2, 3]) +
            entropy_dc_only(blocks) + b"\xFF\xD9")


def exif_orientation(value):
    tiff_ifd = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack(
        "<HHIHH", 0x0112, 3, 1, value, 0) + struct.pack("<I", 0)
    return segment(0xE1, b"Exif\0\0" + tiff_ifd)


def jpeg_seeds():
    return {
        "gray_16x16.jpg": jpeg_gray(16, 16),
        "ycbcr420_32x16.jpg": jpeg_ycbcr420(32, 16),
        "gray_24x16_exif_orientation6.jpg": jpeg_gray(24, 16, app=exif_orientation(6)),
    }


def hostile_jpeg():
    """After APP0, 12 junk bytes (no 0xFF) laid out like a 16x16 SOF0 body,
    then the real SOF0: 20000x20000 YCbCr. libjpeg skips the junk and takes
    the real frame; a probe that resyncs on the junk sees 16x16."""
    junk = bytes([0xC0, 0x00, 0x0B, 0x08, 0x00, 0x10, 0x00, 0x10, 0x01, 0x01, 0x11, 0x00])
    assert len(junk) == 12 and 0xFF not in junk
    blocks = [(1, 120), (2, 128), (3, 128)]  # one MCU; the rest is missing
    return (b"\xFF\xD8" + JFIF_APP0 + junk + sof0(20000, 20000, [(1, 0x11), (2, 0x11),
                                                                  (3, 0x11)]) +
            DQT_ONES + DHT + sos([1, 2, 3]) + entropy_dc_only(blocks) + b"\xFF\xD9")


# ---------------------------------------------------------------- WebP

class BitWriter:
    """LSB-first bit packing (VP8L)."""

    def __init__(self):
        self.value, self.count = 0, 0

    def put(self, v, n):
        self.value |= (v & ((1 << n) - 1)) << self.count
        self.count += n

    def bytes(self):
        return self.value.to_bytes((self.count + 7) // 8, "little")


def webp_lossless_solid(width, height, argb, alpha_used):
    """VP8L, no transforms, no color cache, five single-symbol prefix codes:
    every pixel is the same literal and costs zero bits."""
    w = BitWriter()
    w.put(0x2F, 8)
    w.put(width - 1, 14)
    w.put(height - 1, 14)
    w.put(1 if alpha_used else 0, 1)
    w.put(0, 3)  # version
    w.put(0, 1)  # no transform
    w.put(0, 1)  # no color cache
    w.put(0, 1)  # no meta prefix codes
    a, r, g, b = (argb >> 24) & 255, (argb >> 16) & 255, (argb >> 8) & 255, argb & 255
    for symbol in (g, r, b, a, 0):  # green, red, blue, alpha, distance
        w.put(1, 1)  # simple code
        w.put(0, 1)  # one symbol
        if symbol < 2:
            w.put(0, 1)
            w.put(symbol, 1)
        else:
            w.put(1, 1)
            w.put(symbol, 8)
    data = w.bytes()
    chunk = b"VP8L" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_seeds():
    return {
        "solid_16x16_lossless.webp": webp_lossless_solid(16, 16, 0xFF3080C0, False),
        "solid_alpha_9x5_lossless.webp": webp_lossless_solid(9, 5, 0x80FF0010, True),
    }


# ---------------------------------------------------------------- DICOM

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
LONG_VRS = {"OB", "OW", "OF", "SQ", "UT", "UN"}


def pad(value, vr):
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB") else b" "
    return value


def element(group, elem, vr, value, explicit=True, length=None):
    value = pad(value, vr)
    n = len(value) if length is None else length
    head = struct.pack("<HH", group, elem)
    if not explicit:
        return head + struct.pack("<I", n) + value
    if vr in LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack("<I", n) + value
    return head + vr.encode() + struct.pack("<H", n) + value


def us(v):
    return struct.pack("<H", v)


def meta(transfer_syntax):
    body = (element(2, 1, "OB", b"\0\1") +
            element(2, 2, "UI", SECONDARY_CAPTURE.encode()) +
            element(2, 3, "UI", b"1.2.826.0.1.3680043.10.1313.1") +
            element(2, 0x10, "UI", transfer_syntax.encode()) +
            element(2, 0x12, "UI", b"1.2.826.0.1.3680043.10.1313"))
    return (bytes(128) + b"DICM" + element(2, 0, "UL", struct.pack("<I", len(body))) + body)


def image_attributes(rows, cols, bits, samples=1, photometric="MONOCHROME2", signed=False,
                     frames=None, window=None, rescale=None, explicit=True):
    e = lambda *a: element(*a, explicit=explicit)  # noqa: E731
    out = (e(8, 0x16, "UI", SECONDARY_CAPTURE.encode()) +
           e(8, 0x18, "UI", b"1.2.826.0.1.3680043.10.1313.1") +
           e(8, 0x60, "CS", b"CT" if samples == 1 else b"OT") +
           e(0x28, 2, "US", us(samples)) +
           e(0x28, 4, "CS", photometric.encode()))
    if samples == 3:
        out += e(0x28, 6, "US", us(0))
    if frames is not None:
        out += e(0x28, 8, "IS", str(frames).encode())
    out += (e(0x28, 0x10, "US", us(rows)) + e(0x28, 0x11, "US", us(cols)) +
            e(0x28, 0x100, "US", us(bits)) + e(0x28, 0x101, "US", us(bits)) +
            e(0x28, 0x102, "US", us(bits - 1)) + e(0x28, 0x103, "US", us(1 if signed else 0)))
    if window is not None:
        out += (e(0x28, 0x1050, "DS", str(window[0]).encode()) +
                e(0x28, 0x1051, "DS", str(window[1]).encode()))
    if rescale is not None:
        out += (e(0x28, 0x1052, "DS", str(rescale[1]).encode()) +
                e(0x28, 0x1053, "DS", str(rescale[0]).encode()))
    return out


def encapsulated(fragments):
    out = struct.pack("<HH", 0x7FE0, 0x10) + b"OB\0\0" + struct.pack("<I", 0xFFFFFFFF)
    out += struct.pack("<HHI", 0xFFFE, 0xE000, 0)  # empty basic offset table
    for f in fragments:
        f = pad(f, "OB")
        out += struct.pack("<HHI", 0xFFFE, 0xE000, len(f)) + f
    return out + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def rle_fragment(segments, offsets=None):
    offs, pos = [], 64
    for s in segments:
        offs.append(pos)
        pos += len(s)
    if offsets is not None:
        offs = offsets
    header = struct.pack("<I", len(segments)) + b"".join(struct.pack("<I", o) for o in offs)
    header += bytes(64 - len(header))
    return header + b"".join(segments)


def rle_packbits_rows(data, width):
    """DICOM RLE: PackBits per row, literal runs and repeats."""
    out = b""
    for y in range(0, len(data), width):
        row = data[y:y + width]
        i = 0
        while i < len(row):
            j = i
            while j < len(row) and row[j] == row[i] and j - i < 128:
                j += 1
            if j - i >= 3:
                out += bytes([257 - (j - i)]) + row[i:i + 1]
                i = j
            else:
                k = i + 1
                while k < len(row) and k - i < 128 and not (
                        k + 2 < len(row) and row[k] == row[k + 1] == row[k + 2]):
                    k += 1
                out += bytes([k - i - 1]) + row[i:k]
                i = k
    return out


def dicom_seeds():
    g8 = b"".join(bytes(r) for r in gradient(16, 16, 1))
    g16 = b"".join(struct.pack("<16H", *r) for r in gradient(16, 16, 1, 4095))
    s16 = b"".join(struct.pack("<16h", *(v - 2048 for v in r))
                   for r in gradient(16, 16, 1, 4095))
    rgb = b"".join(bytes(r) for r in gradient(8, 8, 3))
    blocky = bytes((x // 4 * 40 + y // 4 * 60) % 256 for y in range(16) for x in range(16))
    pixel = lambda data, vr="OW": element(0x7FE0, 0x10, vr, data)  # noqa: E731
    seeds = {
        "ct16_window_rescale.dcm": meta(EXPLICIT_LE) + image_attributes(
            16, 16, 16, window=(40, 400), rescale=(1, -1024)) + pixel(g16),
        "mono1_signed16.dcm": meta(EXPLICIT_LE) + image_attributes(
            16, 16, 16, photometric="MONOCHROME1", signed=True) + pixel(s16),
        "implicit_mono8.dcm": meta(IMPLICIT_LE) + image_attributes(
            16, 16, 8, explicit=False) + element(0x7FE0, 0x10, "OB", g8, explicit=False),
        "rgb8.dcm": meta(EXPLICIT_LE) + image_attributes(
            8, 8, 8, samples=3, photometric="RGB") + pixel(rgb, "OB"),
        "multiframe2_mono8.dcm": meta(EXPLICIT_LE) + image_attributes(
            16, 16, 8, frames=2) + pixel(g8 + bytes(reversed(g8)), "OB"),
        "rle_mono8.dcm": meta(RLE) + image_attributes(16, 16, 8) + encapsulated(
            [rle_fragment([rle_packbits_rows(blocky, 16)])]),
        "rle_mono16.dcm": meta(RLE) + image_attributes(16, 16, 16) + encapsulated(
            [rle_fragment([rle_packbits_rows(g16[1::2], 16), rle_packbits_rows(g16[0::2], 16)])]),
        "jpeg_baseline_mono8.dcm": meta(JPEG_BASELINE) + image_attributes(16, 16, 8) +
                                   encapsulated([jpeg_gray(16, 16)]),
    }
    dataset = image_attributes(16, 16, 16, window=(2048, 4096)) + pixel(g16)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    seeds["deflated_mono16.dcm"] = meta(DEFLATED) + c.compress(dataset) + c.flush()
    return seeds


def hostile_rle():
    """RLE Lossless whose first segment offset is 0xD7000040 (the header
    says one segment; the offset points ~3.4 GB past the fragment)."""
    data = bytes(range(16)) * 16
    fragment = rle_fragment([rle_packbits_rows(data, 16)], offsets=[0xD7000040])
    return meta(RLE) + image_attributes(16, 16, 8) + encapsulated([fragment])


def hostile_deflate(declared=1 << 30, stored_zeros=32 << 20):
    """Deflated explicit VR LE; 16x16 16-bit image attributes, then a
    PixelData element declaring `declared` bytes of zeros. The committed
    seed stores only `stored_zeros` of them (the stream then ends): the
    declaration, not the stream, is what must not be trusted. With
    stored_zeros == declared the file is complete (~1 MB)."""
    head = image_attributes(16, 16, 16) + struct.pack("<HH", 0x7FE0, 0x10) + b"OW\0\0" + \
        struct.pack("<I", declared)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [c.compress(head)]
    zeros = bytes(1 << 20)
    left = stored_zeros
    while left > 0:
        n = min(left, len(zeros))
        out.append(c.compress(zeros[:n]))
        left -= n
    out.append(c.flush())
    return meta(DEFLATED) + b"".join(out)


# ---------------------------------------------------------------- protobuf

def varint(v):
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_f32(num, v):
    return varint(num << 3 | 5) + struct.pack("<f", v)


def packed_varints(num, values):
    return field_bytes(num, b"".join(varint(v) for v in values))


# ---------------------------------------------------------------- ONNX

FLOAT, INT64 = 1, 7


def onnx_tensor(name, dims, data_type=FLOAT, values=None, raw=None):
    out = b"".join(field_varint(1, d) for d in dims) + field_varint(2, data_type)
    out += field_bytes(8, name)
    if raw is None and values is not None:
        raw = struct.pack("<%d%s" % (len(values), "f" if data_type == FLOAT else "q"), *values)
    if raw is not None:
        out += field_bytes(9, raw)
    return out


def attr_int(name, v):
    return field_bytes(1, name) + field_varint(3, v) + field_varint(20, 2)


def attr_float(name, v):
    return field_bytes(1, name) + field_f32(2, v) + field_varint(20, 1)


def attr_ints(name, values):
    return field_bytes(1, name) + b"".join(field_varint(8, v) for v in values) + \
        field_varint(20, 7)


def attr_tensor(name, tensor):
    return field_bytes(1, name) + field_bytes(5, tensor) + field_varint(20, 4)


def node(op, inputs, outputs, attrs=(), name=None):
    out = b"".join(field_bytes(1, i) for i in inputs) + b"".join(field_bytes(2, o) for o in outputs)
    out += field_bytes(3, name or (op.lower() + "_" + outputs[0]))
    out += field_bytes(4, op)
    return out + b"".join(field_bytes(5, a) for a in attrs)


def value_info(name, dims, elem_type=FLOAT):
    shape = b""
    for d in dims:
        shape += field_bytes(1, field_bytes(2, d) if isinstance(d, str) else field_varint(1, d))
    tensor_type = field_varint(1, elem_type) + field_bytes(2, shape)
    return field_bytes(1, name) + field_bytes(2, field_bytes(1, tensor_type))


def onnx_model(nodes, inputs, outputs, initializers=(), opset=13):
    graph = b"".join(field_bytes(1, n) for n in nodes) + field_bytes(2, "g")
    graph += b"".join(field_bytes(5, t) for t in initializers)
    graph += b"".join(field_bytes(11, v) for v in inputs)
    graph += b"".join(field_bytes(12, v) for v in outputs)
    return (field_varint(1, 8) + field_bytes(2, "rectifier-fuzz-seeds") + field_bytes(7, graph) +
            field_bytes(8, field_varint(2, opset)))


def weights(n, scale=0.1):
    return [((i * 37) % 19 - 9) * scale / 9 for i in range(n)]


def onnx_seeds():
    relu = onnx_model([node("Relu", ["X"], ["Y"])], [value_info("X", ["N", 3, 4, 4])],
                      [value_info("Y", ["N", 3, 4, 4])])
    cnn_nodes = [
        node("Conv", ["X", "W", "B"], ["c"], [attr_ints("kernel_shape", [3, 3]),
                                             attr_ints("pads", [1, 1, 1, 1]),
                                             attr_ints("strides", [1, 1])]),
        node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"],
             [attr_float("epsilon", 1e-5)]),
        node("Relu", ["bn"], ["r"]),
        node("MaxPool", ["r"], ["p"], [attr_ints("kernel_shape", [2, 2]),
                                       attr_ints("strides", [2, 2])]),
        node("Conv", ["p", "W2"], ["q"], [attr_ints("kernel_shape", [1, 1])]),
        node("Add", ["q", "p"], ["a"]),
        node("Sigmoid", ["a"], ["sg"]),
        node("Mul", ["a", "sg"], ["silu"]),
        node("GlobalAveragePool", ["silu"], ["gap"]),
        node("Flatten", ["gap"], ["f"], [attr_int("axis", 1)]),
        node("Gemm", ["f", "Wfc", "bfc"], ["logits"], [attr_int("transB", 1)]),
        node("Softmax", ["logits"], ["Y"], [attr_int("axis", 1)]),
    ]
    cnn_init = [
        onnx_tensor("W", [4, 3, 3, 3], values=weights(108)),
        onnx_tensor("B", [4], values=weights(4)),
        onnx_tensor("s", [4], values=[1.0, 0.9, 1.1, 1.2]),
        onnx_tensor("b", [4], values=[0.0, 0.1, -0.1, 0.2]),
        onnx_tensor("m", [4], values=[0.01, 0.02, 0.0, -0.01]),
        onnx_tensor("v", [4], values=[1.0, 0.5, 2.0, 1.5]),
        onnx_tensor("W2", [4, 4, 1, 1], values=weights(16)),
        onnx_tensor("Wfc", [3, 4], values=weights(12)),
        onnx_tensor("bfc", [3], values=[0.0, 0.1, 0.2]),
    ]
    cnn = onnx_model(cnn_nodes, [value_info("X", ["N", 3, 8, 8])], [value_info("Y", ["N", 3])],
                     cnn_init)
    shapes_nodes = [
        node("Constant", [], ["shape"], [attr_tensor(
            "value", onnx_tensor("shape_value", [2], INT64, values=[1, -1]))]),
        node("Reshape", ["X", "shape"], ["r"]),
        node("Concat", ["r", "r"], ["cat"], [attr_int("axis", 1)]),
        node("Transpose", ["cat"], ["t"], [attr_ints("perm", [1, 0])]),
        node("HardSwish", ["t"], ["Y"]),
    ]
    shapes = onnx_model(shapes_nodes, [value_info("X", [1, 2, 3, 4])], [value_info("Y", [48, 1])])
    seeds = {"relu.onnx": relu, "cnn_bn_residual_silu.onnx": cnn, "reshape_concat.onnx": shapes}
    # A MobileNetV2 inverted residual whose 1x1 expansion (16 -> 96 channels
    # at 112 x 112, 4.8 MB) feeds a depthwise 3x3 alone: depthwise fusion.
    # onnx_fuzz picks the conv layout from the input's size modulo 3; one
    # seed per blocked layout (padded by a doc string).
    dw_nodes = [
        node("Conv", ["X", "We", "Be"], ["e"], [attr_ints("kernel_shape", [1, 1])]),
        node("Clip", ["e", "lo", "hi"], ["ea"]),
        node("Conv", ["ea", "Wd", "Bd"], ["d"], [attr_ints("kernel_shape", [3, 3]),
                                                attr_ints("pads", [1, 1, 1, 1]),
                                                attr_ints("strides", [2, 2]),
                                                attr_int("group", 96)]),
        node("Clip", ["d", "lo", "hi"], ["da"]),
        node("Conv", ["da", "Wp"], ["Y"], [attr_ints("kernel_shape", [1, 1])]),
    ]
    dw_init = [
        onnx_tensor("We", [96, 16, 1, 1], values=weights(96 * 16)),
        onnx_tensor("Be", [96], values=weights(96)),
        onnx_tensor("Wd", [96, 1, 3, 3], values=weights(96 * 9)),
        onnx_tensor("Bd", [96], values=weights(96)),
        onnx_tensor("Wp", [16, 96, 1, 1], values=weights(16 * 96)),
        onnx_tensor("lo", [], values=[0.0]),
        onnx_tensor("hi", [], values=[6.0]),
    ]
    dw = onnx_model(dw_nodes, [value_info("X", ["N", 16, 112, 112])],
                    [value_info("Y", ["N", 16, 56, 56])], dw_init)
    for layout, name in ((1, "inverted_residual_blocked8.onnx"),
                         (2, "inverted_residual_blocked16.onnx")):
        # ModelProto.doc_string of 1-3 characters: one of them fits.
        seeds[name] = next(p for p in (dw + field_bytes(6, "x" * k) for k in (1, 2, 3))
                           if len(p) % 3 == layout)
    return seeds


def hostile_onnx():
    """A 4 GiB FLOAT initializer (2^30 elements) with no data, consumed by
    Identity: ~111 bytes."""
    init = onnx_tensor("W", [1 << 30])
    graph = field_bytes(1, node("Identity", ["W"], ["Y"], name="n")) + field_bytes(2, "g") + \
        field_bytes(5, init) + field_bytes(12, value_info("Y", [1 << 30]))
    return field_varint(1, 8) + field_bytes(7, graph) + field_bytes(8, field_varint(2, 13))


# ---------------------------------------------------------------- KServe

def infer_input(name, datatype, shape, contents=b""):
    out = field_bytes(1, name) + field_bytes(2, datatype) + packed_varints(3, shape)
    return out + (field_bytes(5, contents) if contents else b"")


def infer_param(key, value_field):
    return field_bytes(1, key) + field_bytes(2, value_field)


def shm_params(region, offset, byte_size):
    """A tensor's shared memory parameters (map entries, field 4 of an input,
    field 2 of a requested output)."""
    return [infer_param("shared_memory_region", field_bytes(3, region)),
            infer_param("shared_memory_offset", field_varint(2, offset)),
            infer_param("shared_memory_byte_size", field_varint(2, byte_size))]


def infer_request(model, inputs, raw=(), outputs=(), params=(), request_id="seed"):
    """`outputs`: names, or (name, [parameter entries]) pairs."""
    out = field_bytes(1, model) + field_bytes(3, request_id)
    out += b"".join(field_bytes(4, p) for p in params)
    out += b"".join(field_bytes(5, i) for i in inputs)
    for o in outputs:
        name, o_params = (o, []) if isinstance(o, str) else o
        out += field_bytes(6, field_bytes(1, name) + b"".join(field_bytes(2, p) for p in o_params))
    return out + b"".join(field_bytes(7, r) for r in raw)


def infer_seeds(images):
    png_gray = images["gray8_16x16.png"]
    jpg = images["ycbcr420_32x16.jpg"]
    pgm = images["gray8_16x16.pgm"]
    length_prefixed = b"".join(struct.pack("<I", len(i)) + i for i in (png_gray, pgm))
    fp32_typed = field_bytes(6, struct.pack("<6f", *[0.5 * i for i in range(6)]))
    return {
        "scan_bytes_png.pb": infer_request(
            "scan_classifier", [infer_input("image", "BYTES", [1], field_bytes(8, png_gray))]),
        "scan_raw_two_images.pb": infer_request(
            "scan_classifier", [infer_input("image", "BYTES", [2, 1])], raw=[length_prefixed]),
        "road_bytes_jpeg.pb": infer_request(
            "road_detector", [infer_input("images", "BYTES", [1], field_bytes(8, jpg))],
            params=[infer_param("priority", field_varint(5, 1))]),
        "scan_uint8_tensor.pb": infer_request(
            "scan_classifier", [infer_input("image", "UINT8", [1, 1, 128, 128])],
            raw=[bytes(i % 256 for i in range(128 * 128))]),
        "tensors_raw_fp32.pb": infer_request(
            "tensors", [infer_input("x", "FP32", [2, 3])], raw=[struct.pack("<6f", *range(6))],
            outputs=["y"], params=[infer_param("timeout", field_varint(2, 1000))]),
        "tensors_typed_mixed.pb": infer_request("tensors", [
            infer_input("x", "FP32", [1, 6], fp32_typed),
            infer_input("ids", "INT64", [1, 4], packed_varints(3, [1, -2, 3, 1 << 40])),
            infer_input("mask", "BOOL", [1, 3], packed_varints(1, [1, 0, 1])),
            infer_input("d", "FP64", [1, 2], field_bytes(7, struct.pack("<2d", 1.5, -2.25))),
            infer_input("u", "UINT8", [1, 3], packed_varints(4, [0, 128, 255])),
        ], outputs=["z", "y"]),
        "tensors_fp16_to_fp32.pb": infer_request(
            "tensors", [infer_input("x", "FP16", [1, 4])],
            raw=[struct.pack("<4H", 0x3C00, 0xC000, 0x7C00, 0x0001)]),
        "unbatched_int32_int8.pb": infer_request("unbatched", [
            infer_input("a", "INT32", [2, 3]),
            infer_input("b", "INT8", [2, 4]),
        ], raw=[struct.pack("<6i", 1, 2, 3, -4, 5, -6), bytes(range(8))]),
        # Client shared memory: the fuzz target registers region "fuzz"
        # (4096 bytes) and "fuzz_tail" (96 bytes at its end).
        "tensors_shm_in_out.pb": infer_request(
            "tensors",
            [infer_input("x", "FP32", [1, 6]) + b"".join(
                field_bytes(4, p) for p in shm_params("fuzz", 64, 24))],
            outputs=[("y", shm_params("fuzz_tail", 0, 96)), "z"]),
        "tensors_shm_out_of_range.pb": infer_request(
            "tensors",
            [infer_input("x", "FP32", [1, 6]) + b"".join(
                field_bytes(4, p) for p in shm_params("fuzz_tail", 80, 24))]),
        "unbatched_typed_int32.pb": infer_request("unbatched", [
            infer_input("a", "INT32", [2, 3], packed_varints(2, [1, 2, 3, -4, 5, -6])),
            infer_input("b", "INT8", [1, 4], packed_varints(2, [-128, 0, 1, 127])),
        ]),
    }


def hostile_infer():
    """FP64 input of shape [1, 2^61 + 1] with 8 bytes of data: 8 * (2^61 + 1)
    wraps to 8 in 64 bits."""
    return infer_request("tensors", [infer_input("x", "FP64", [1, (1 << 61) + 1])],
                         raw=[struct.pack("<d", 1.0)])


# ---------------------------------------------------------------- config.pbtxt

CONFIG_SEEDS = {
    "minimal.pbtxt": 'platform: "onnxruntime_onnx"\n',
    "tensors_policy.pbtxt": '''name: "m"
backend: "rectifier"
max_batch_size: 8
version_policy { specific { versions: [ 1, 3 ] } }
input [ { name: "x" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, -1, -1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 10 ] reshape { shape: [ 10 ] } } ]
instance_group [ { name: "g" count: 2 kind: KIND_CPU } ]
default_model_filename: "net.onnx"
parameters { key: "intra_op_threads" value { string_value: "2" } }
''',
    "batching_priorities.pbtxt": '''max_batch_size: 16
dynamic_batching {
  preferred_batch_size: [ 4, 16 ]
  max_queue_delay_microseconds: 100
  preserve_ordering: true
  priority_levels: 3
  default_priority_level: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 5000
                         allow_timeout_override: true max_queue_size: 32 }
  priority_queue_policy { key: 1 value { timeout_action: REJECT max_queue_size: 4 } }
}
model_warmup [ { name: "w" batch_size: 2 count: 1
  inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 1, 128, 128 ] zero_data: true } } } ]
''',
    "activation.pbtxt": '''activation {
  fuse: false
  kernel: RECTIFIER
  replace [ { from: "SiLU" to: "LeakyRelu" alpha: 0.1 }, { from: "Clip" to: "Clip" alpha: 0 beta: 6 } ]
  gelu_approximation: "tanh"
  statistics { sample_every: 100 }
}
''',
    "classify_dicom_window.pbtxt": '''max_batch_size: 4
preprocessing {
  color_format: COLOR_GRAY resize_mode: RESIZE_CENTER_CROP resize_shorter: 144
  interpolation: INTERPOLATION_CUBIC scale: 1.0 mean: [ 0.5 ] stddev: [ 0.25 ]
  sixteen_bit: SIXTEEN_BIT_WINDOW window_center: 2048 window_width: 4096
  dicom_window: DICOM_WINDOW_FIXED dicom_window_center: 40 dicom_window_width: 400
  disable_scaled_decode: true
}
postprocessing { task: TASK_CLASSIFICATION score_activation: SCORE_ACTIVATION_SIGMOID
                 top_k: 2 threshold: 0.1 }
''',
    "detect_nhwc.pbtxt": '''preprocessing { color_format: COLOR_BGR resize_mode: RESIZE_LETTERBOX pad_value: 0
                layout: LAYOUT_NHWC mean: [ 0.485, 0.456, 0.406 ] stddev: [ 0.229, 0.224, 0.225 ] }
postprocessing { task: TASK_DETECTION score_threshold: 0.5 iou_threshold: 0.6 max_detections: 10
                 class_agnostic: true class_filter: [ 0, 1 ] labels: [ "a", "b" ] }
''',
}


# ---------------------------------------------------------------- main

def http_seeds():
    """PATH, Inference-Header-Content-Length ("-": none) and body, one per line."""
    def request(path, body, binary=b""):
        header = str(len(body)).encode() if binary else b"-"
        return path.encode() + b"\n" + header + b"\n" + body + binary
    x = {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1.5, -2, 3e-3]}
    raw = struct.pack("<3f", 1.0, 2.0, 3.0)
    seeds = {
        "json_fp32.txt": request("/v2/models/tensors/infer", json.dumps(
            {"id": "a", "parameters": {"priority": 1, "timeout": 1000}, "inputs": [x],
             "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()),
        "json_every_type.txt": request("/v2/models/tensors/versions/1/infer", json.dumps(
            {"inputs": [x,
                        {"name": "ids", "datatype": "INT64", "shape": [1, 4],
                         "data": [[-9223372036854775808, 0, 1, 9223372036854775807]]},
                        {"name": "mask", "datatype": "BOOL", "shape": [1, 2], "data": [True, False]},
                        {"name": "d", "datatype": "FP64", "shape": [1, 2], "data": [0.5, 1e300]},
                        {"name": "u", "datatype": "UINT8", "shape": [1, 3], "data": [0, 128, 255]},
                        {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["ab", ""]}],
             "parameters": {"binary_data_output": True}}).encode()),
        "binary_mixed.txt": request("/v2/models/tensors/infer", json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                         "parameters": {"binary_data_size": len(raw)}},
                        {"name": "u", "datatype": "UINT8", "shape": [1, 3], "data": [1, 2, 3]}]}
        ).encode(), raw),
        "shared_memory_in_out.txt": request("/v2/models/tensors/infer", json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                         "parameters": {"shared_memory_region": "in",
                                        "shared_memory_offset": 64,
                                        "shared_memory_byte_size": 12}}],
             "outputs": [{"name": "y", "parameters": {"shared_memory_region": "out",
                                                      "shared_memory_byte_size": 64}}]}
        ).encode()),
        "shared_memory_register_route.txt": request(
            "/v2/systemsharedmemory/region/in/register",
            json.dumps({"key": "/in", "offset": 0, "byte_size": 64}).encode()),
        "binary_fp16_bytes.txt": request("/v2/models/tensors/infer", json.dumps(
            {"inputs": [{"name": "h", "datatype": "FP16", "shape": [2],
                         "parameters": {"binary_data_size": 4}},
                        {"name": "s", "datatype": "BYTES", "shape": [1],
                         "parameters": {"binary_data_size": 7}}]}).encode(),
            struct.pack("<2H", 0x3c00, 0x7e00) + struct.pack("<I", 3) + b"\xff\x00a"),
        "nested.txt": request("/v2/models/tensors/infer",
                              b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,1],'
                              b'"data":[[[[[[1]]]]]]}]}'),
        "routes.txt": request("/v2/repository/models/m/unload", b"{}"),
        "route_stats.txt": request("/v2/models/stats", b""),
        "classify_query.txt": b"/v1/models/m/classify?top_k=2&threshold=0.5&id=a%20b&priority=1"
                              b"\n-\nP5\n2 2\n255\n\x00\x01\x02\x03",
        "detect_multipart.txt": b"/v1/models/m/versions/2/detect?classes=0,2&classes=5"
                                b"&score_threshold=0.25&max_detections=9&timeout_us=100\n"
                                b"multipart/form-data; boundary=\"b1\"\n"
                                b"--b1\r\nContent-Disposition: form-data; name=\"i\"; "
                                b"filename=\"a.pgm\"\r\n\r\nP5\n1 1\n255\n\x07\r\n"
                                b"--b1\r\nContent-Disposition: form-data; name=\"j\"\r\n\r\n"
                                b"xyz\r\n--b1--\r\n",
    }
    return seeds


def write_corpus(name, files):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for existing in os.listdir(d):
        if not existing.startswith("found_"):  # inputs campaigns found stay
            os.remove(os.path.join(d, existing))
    for fname, data in sorted(files.items()):
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
    total = sum(len(v) for v in files.values())
    print("fuzz/corpus/%s: %d files, %d bytes" % (name, len(files), total))


# Lossless WebP (VP8L) declaring 15625x4096 pixels in 32 bytes, which libwebp
# decodes (2.4 s, 560 MB): refused by the pixels-per-byte limit. Found by
# vision_request_fuzz.
HOSTILE_WEBP_BOMB = (b"RIFF\x18\x00\x00\x00WEBPVP8L\x0b\x00\x00\x00"
                     b"\x2f\x08\xfd\xff\x13\x88\xfe\x17\xa2\x80\x01\x00")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full-deflate", metavar="PATH",
                        help="write the complete 1 GiB deflated DICOM (~1 MB) to PATH and exit")
    args = parser.parse_args()
    if args.full_deflate:
        with open(args.full_deflate, "wb") as f:
            f.write(hostile_deflate(stored_zeros=1 << 30))
        return 0

    images = {}
    for part in (png_seeds, bmp_seeds, pnm_seeds, tiff_seeds, jpeg_seeds, webp_seeds):
        images.update(part())
    hostile_images = {
        "hostile_jpeg_junk_sof16_then_sof20000.jpg": hostile_jpeg(),
        "hostile_tiff_dup_dims_20000_then_16.tif": hostile_tiff(),
        "hostile_png_rgba16_16384x4096.png": png_zero_rgba16(16384, 4096),
        "hostile_webp_lossless_15625x4096_in_32_bytes.webp": HOSTILE_WEBP_BOMB,
    }
    dicoms = dicom_seeds()
    hostile_dicoms = {
        "hostile_rle_offset_d7000040.dcm": hostile_rle(),
        "hostile_deflate_declares_1gib_truncated.dcm": hostile_deflate(),
    }
    write_corpus("image_decode", {**images, **hostile_images})
    write_corpus("dicom", {**dicoms, **hostile_dicoms})
    write_corpus("vision_request", {**images, **hostile_images, **dicoms, **hostile_dicoms})
    write_corpus("onnx", {**onnx_seeds(), "hostile_initializer_4gib.onnx": hostile_onnx()})
    write_corpus("infer_request", {**infer_seeds(images),
                                   "hostile_fp64_shape_2pow61plus1.pb": hostile_infer()})
    configs = dict(CONFIG_SEEDS)
    for model in ("scan_classifier", "road_detector"):
        with open(os.path.join(ROOT, "models", model, "config.pbtxt")) as f:
            configs[model + ".pbtxt"] = f.read()
    write_corpus("model_config", configs)
    admin, infer = "admin-token-0123456789abcdef", "infer-token-0123456789abcdef"
    write_corpus("security", {
        "tokens_file.txt": b"\x00# role token\nadmin " + admin.encode() + b"\n\tinfer  "
                           + infer.encode() + b"\n\n",
        "tokens_bad_role.txt": b"\x00root " + admin.encode() + b"\n",
        "auth_admin.txt": b"\x01Bearer " + admin.encode(),
        "auth_infer.txt": b"\x01bearer   " + infer.encode() + b"  ",
        "auth_basic.txt": b"\x01Basic dXNlcjpwYXNz",
        "http_get.txt": b"\x02GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "http_head_query.txt": b"\x02HEAD /metrics?name[]=x HTTP/1.0\r\n\r\n",
        "http_post.txt": b"\x02POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "http_other_path.txt": b"\x02GET /v2/health/ready HTTP/1.1\r\n\r\n",
        "http_partial.txt": b"\x02GET /metr",
    })
    write_corpus("http_request", http_seeds())
    for name, data in {**hostile_images, **hostile_dicoms,
                       "hostile_initializer_4gib.onnx": hostile_onnx(),
                       "hostile_fp64_shape_2pow61plus1.pb": hostile_infer()}.items():
        print("  %s: %d bytes" % (name, len(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
