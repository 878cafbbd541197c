"""Bitstream headers of MPEG-4 Part 2 (Xvid / DivX) and H.264, read without decoding pixels.

Shared by :mod:`vidssl.video.reader` (frame numbering, picture types, which packets may be left
out of a decode) and :mod:`vidssl.video.compressed` (reference-frame counts). Every parser reads
a few header fields from packet bytes and returns None where the bytes do not say (truncated or
unknown data), never guessing:

- MPEG-4 Part 2 (ISO 14496-2): ``vop_time_increment_resolution`` from the Video Object Layer
  header (6.2.3), whether a VOP is coded and its type (6.2.5), DivX "packed B-frames" user data.
- H.264 (ISO 14496-10): NAL units in Annex B (start codes) or AVCC (length-prefixed, MP4 / MKV)
  framing, ``max_num_ref_frames`` from the sequence parameter set (7.3.2.1.1), the slice type
  and ``nal_ref_idc`` of an access unit's first slice (7.3.3, 7.4.1).

:class:`PictureHeaders` puts them together per stream: ``picture(packet bytes)`` ->
``(type, disposable)``, where a disposable picture is one no other picture predicts from
(MPEG-4 B-VOPs, H.264 pictures with ``nal_ref_idc == 0``), so a decoder that is not asked for
it can be spared it without changing any other frame.
"""
from __future__ import annotations

import re
from typing import Iterator

__all__ = [
    "START_CODE", "VOP_START_CODE", "MAX_NVOP_SIZE", "BitReader", "PictureHeaders",
    "mpeg4_time_resolution", "mpeg4_vop_coded", "mpeg4_vop_type", "divx_packed",
    "avcc_length_size", "h264_nals", "h264_max_ref_frames", "h264_slice_type", "h264_picture",
]

START_CODE = b"\x00\x00\x01"
VOP_START_CODE = b"\x00\x00\x01\xb6"
# FFmpeg's mpeg4_unpack_bframes filter treats packets up to this size as N-VOP placeholders.
MAX_NVOP_SIZE = 19


class BitReader:
    """MSB-first bit reader over ``data[start:]`` with Exp-Golomb codes (H.264 7.2).

    Reading past the end raises ``EOFError``.
    """

    def __init__(self, data: bytes, start: int = 0):
        self.value = int.from_bytes(data[start:], "big")
        self.left = 8 * (len(data) - start)

    def u(self, n: int) -> int:
        if n > self.left:
            raise EOFError
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    read = u

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise EOFError
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


# -- MPEG-4 Part 2 ----------------------------------------------------------------------------

_DIVX_USER_DATA = re.compile(rb"DivX(\d+)(?:Build|b)(\d+)(.)?")


def divx_packed(headers: bytes) -> bool:
    """DivX writes "DivX503b1393p" in user data when B-frames are packed (FFmpeg's own test)."""
    match = _DIVX_USER_DATA.search(headers)
    return bool(match) and match.group(3) == b"p"


def mpeg4_time_resolution(data: bytes | None) -> int | None:
    """vop_time_increment_resolution from a Video Object Layer header (ISO 14496-2 6.2.3)."""
    if not data:
        return None
    at = 0
    while True:
        at = data.find(START_CODE, at)
        if at < 0 or at + 4 > len(data):
            return None
        if 0x20 <= data[at + 3] <= 0x2F:  # video_object_layer_start_code
            break
        at += 3
    bits = BitReader(data[: at + 4 + 32], at + 4)
    try:
        bits.u(1 + 8)  # random_accessible_vol, video_object_type_indication
        verid = 1
        if bits.u(1):  # is_object_layer_identifier
            verid = bits.u(4)
            bits.u(3)
        if bits.u(4) == 0xF:  # aspect_ratio_info: extended PAR
            bits.u(16)
        if bits.u(1):  # vol_control_parameters
            bits.u(3)  # chroma_format, low_delay
            if bits.u(1):  # vbv_parameters
                bits.u(79)
        shape = bits.u(2)
        if shape == 3 and verid != 1:
            bits.u(4)
        bits.u(1)  # marker
        resolution = bits.u(16)
    except EOFError:
        return None
    return resolution or None


def mpeg4_vop_coded(data: bytes, resolution: int | None) -> bool | None:
    """Whether the VOP in ``data`` is coded (ISO 14496-2 6.2.5); None when it cannot tell."""
    at = data.find(VOP_START_CODE)
    if at < 0 or resolution is None:
        return None
    bits = BitReader(data, at + 4)
    try:
        bits.u(2)  # vop_coding_type
        while bits.u(1):  # modulo_time_base
            pass
        bits.u(1)  # marker
        bits.u(max(1, (resolution - 1).bit_length()))  # vop_time_increment
        bits.u(1)  # marker
        return bool(bits.u(1))  # vop_coded
    except EOFError:
        return None


def mpeg4_vop_type(data: bytes) -> str | None:
    """'I', 'P' or 'B' from a VOP header (ISO 14496-2 6.2.5); S(GMC)-VOPs count as P."""
    at = data.find(VOP_START_CODE)
    if at < 0 or at + 4 >= len(data):
        return None
    return "IPBP"[data[at + 4] >> 6]


# -- H.264 ------------------------------------------------------------------------------------


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _annexb_nals(data: bytes) -> Iterator[bytes]:
    at = data.find(START_CODE)
    while at >= 0:
        start = at + 3
        at = data.find(START_CODE, start)
        yield data[start:at if at >= 0 else len(data)].rstrip(b"\x00")


def _avcc_nals(data: bytes, length_size: int) -> Iterator[bytes]:
    at = 0
    while at + length_size <= len(data):
        size = int.from_bytes(data[at:at + length_size], "big")
        at += length_size
        if size <= 0 or at + size > len(data):
            return
        yield data[at:at + size]
        at += size


def avcc_length_size(extradata: bytes | None) -> int | None:
    """NAL length-prefix size of an MP4/MKV H.264 stream, None for Annex B (start codes)."""
    if extradata and len(extradata) > 4 and extradata[0] == 1:
        return (extradata[4] & 3) + 1
    return None


def h264_nals(data: bytes | None, length_size: int | None = None) -> Iterator[bytes]:
    """NAL units of ``data``: an avcC record (its first SPS), length-prefixed or Annex B bytes."""
    if not data:
        return iter(())
    if length_size is None and data[0] == 1 and len(data) > 8:  # avcC record: SPS list after 6 bytes
        size = int.from_bytes(data[6:8], "big")
        return iter([data[8:8 + size]])
    if length_size is not None:
        return _avcc_nals(data, length_size)
    return _annexb_nals(data)


def h264_max_ref_frames(data: bytes | None) -> int | None:
    """max_num_ref_frames of the first sequence parameter set in ``data`` (H.264 7.3.2.1.1)."""
    for nal in h264_nals(data):
        if nal and nal[0] & 0x1F == 7:
            try:
                return _parse_sps_refs(_unescape(nal[1:]))
            except EOFError:
                return None
    return None


def _parse_sps_refs(sps: bytes) -> int:
    bits = BitReader(sps)
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma = bits.ue()
        if chroma == 3:
            bits.u(1)
        bits.ue()
        bits.ue()  # bit depths
        bits.u(1)  # qpprime_y_zero_transform_bypass
        if bits.u(1):  # seq_scaling_matrix_present
            for i in range(8 if chroma != 3 else 12):
                if bits.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + bits.se() + 256) % 256
                        last = nxt or last
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    return bits.ue()


def h264_picture(data: bytes, length_size: int | None) -> tuple[str | None, bool | None]:
    """(slice type 'I' / 'P' / 'B', is a reference picture) of an access unit's first slice.

    The type comes from ``slice_type`` (7.3.3; SP counts as P, SI as I), the reference flag
    from ``nal_ref_idc`` (7.4.1: 0 means no picture predicts from this one; the same for
    every slice of a picture). (None, None) when ``data`` holds no readable slice header.
    """
    nals = _avcc_nals(data, length_size) if length_size else _annexb_nals(data)
    for nal in nals:
        if nal and nal[0] & 0x1F in (1, 5):
            try:
                bits = BitReader(_unescape(nal[1:8]))
                bits.ue()  # first_mb_in_slice
                return "PBIPI"[bits.ue() % 5], bool(nal[0] & 0x60)
            except EOFError:
                return None, None
    return None, None


def h264_slice_type(data: bytes, length_size: int | None) -> str | None:
    """'I', 'P' or 'B' from the first slice header of an access unit (H.264 7.3.3)."""
    return h264_picture(data, length_size)[0]


# -- per stream -------------------------------------------------------------------------------


class PictureHeaders:
    """Picture type and disposability of a stream's packets, from their headers.

    ``codec`` is the decoder name (``mpeg4`` or ``h264``; others read as unknown), ``extradata``
    the stream's codec extradata. ``picture(data)`` -> ``(type or None, disposable)``:
    disposable is True only when the headers say for certain that no other picture predicts
    from this one (an MPEG-4 B-VOP in a packet holding one VOP; an H.264 picture with
    ``nal_ref_idc == 0``).
    """

    def __init__(self, codec: str, extradata: bytes | None):
        self.codec = codec
        self.length_size = avcc_length_size(extradata) if codec == "h264" else None

    @property
    def known(self) -> bool:
        return self.codec in ("mpeg4", "h264")

    def picture(self, data: bytes) -> tuple[str | None, bool]:
        if self.codec == "mpeg4":
            kind = mpeg4_vop_type(data)
            return kind, kind == "B" and data.count(VOP_START_CODE) == 1
        if self.codec == "h264":
            kind, reference = h264_picture(data, self.length_size)
            return kind, reference is False
        return None, False
