"""Read an X Window Dump (``xwd -out``) of a 24-bit TrueColor window into a numpy RGB array.

Our own few lines: the format is X11's (XWDFile.h: a big-endian header of 25 CARD32, the window
name, ncolors XWDColor entries, then the ZPixmap rows), and no library here reads it (Pillow's
XWD support is not in its plugins; ImageMagick is not installed on CI).
"""

from __future__ import annotations

import struct

import numpy as np


def read_xwd(data: bytes) -> np.ndarray:
    hdr = struct.unpack(">25I", data[:100])
    header_size, version, fmt, depth, width, height = hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5]
    byte_order, bits_per_pixel, bytes_per_line = hdr[7], hdr[11], hdr[12]
    red_mask, green_mask, blue_mask = hdr[14], hdr[15], hdr[16]
    ncolors = hdr[19]
    if version != 7 or fmt != 2 or bits_per_pixel not in (24, 32):
        raise ValueError(f"unsupported XWD (version {version}, format {fmt}, {bits_per_pixel} bpp)")
    off = header_size + ncolors * 12
    nb = bits_per_pixel // 8
    rows = np.frombuffer(data, dtype=np.uint8, count=height * bytes_per_line, offset=off)
    px = rows.reshape(height, bytes_per_line)[:, :width * nb].reshape(height, width, nb).astype(np.uint32)
    if byte_order == 0:  # LSBFirst
        px = px[..., ::-1]
    v = np.zeros((height, width), dtype=np.uint32)
    for i in range(nb):
        v = (v << 8) | px[..., i]
    out = np.empty((height, width, 3), dtype=np.uint8)
    for i, m in enumerate((red_mask, green_mask, blue_mask)):
        shift = (m & -m).bit_length() - 1
        out[..., i] = (v & m) >> shift
    del depth
    return out
