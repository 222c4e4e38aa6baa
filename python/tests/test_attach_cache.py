"""The decode cache of attach (python/sharedbridge/_format/header.py): a header whose exact
bytes were validated before is not validated again, but nothing else may be taken from an
earlier decode. A segment re-created under the same name (another shape, the same size),
one of its header bytes changed, its state word, or its object size changed, is decoded
afresh and refused where docs/format.md sections 6.2 and 12.1 say so. Every segment is
named sbt_pya_<pid>_<n> and removed by its test."""

import gc
import itertools
import os
import struct

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from conftest import image_of, reseal, write_segment

SHM = "/dev/shm"
_counter = itertools.count()


@pytest.fixture
def pya_name():
    """pya_name() -> a fresh sbt_pya_<pid>_<n> name; whatever is left at each one is
    removed afterwards."""
    made = []

    def make():
        made.append(f"sbt_pya_{os.getpid()}_{next(_counter)}")
        return made[-1]
    yield make
    for name in made:
        if os.path.lexists(os.path.join(SHM, name)):
            os.unlink(os.path.join(SHM, name))


def _attached_shape(name):
    a = sb.attach(name)
    try:
        return a.shape
    finally:
        a.close()


def test_recreated_with_another_shape_of_the_same_size_is_decoded_afresh(pya_name):
    name = pya_name()
    for shape in [(2, 3), (3, 2), (6,), (1, 6, 1), (2, 3)]:
        sb.ndarray(shape, "i", name=name, lifetime="persistent").close()
        try:
            for _ in range(2):          # the second attach finds the first one's decode
                assert _attached_shape(name) == shape
            assert sb.header_of(name).shape == shape
        finally:
            sb.unlink(name)


def test_a_changed_byte_under_the_same_name_is_refused(pya_name):
    name = pya_name()
    # Nothing of it stays mapped here, so that attach decodes (rather than reusing this
    # process's mapping of the same object).
    sb.ndarray((4, 5), "d", name=name, lifetime="persistent").close()
    gc.collect()
    img = image_of(name)
    assert _attached_shape(name) == (4, 5)        # this exact header is cached now
    shape_at = struct.unpack_from("<I", img, H.NDIM_OFFSET + 4)[0]

    def rewrite(data, size=None):
        os.unlink(os.path.join(SHM, name))
        write_segment(name, data, size)

    # One dimension changed, the checksum left alone: the checksum fails.
    bad = bytearray(img)
    struct.pack_into("<Q", bad, shape_at, 5)
    rewrite(bad)
    with pytest.raises(sb.CorruptSegmentError, match="header_crc32"):
        sb.attach(name, timeout=0.2)
    # The same, resealed: the shape no longer matches element_count.
    rewrite(reseal(bad))
    with pytest.raises(sb.CorruptSegmentError, match="element_count"):
        sb.attach(name, timeout=0.2)
    # A byte past the fixed header (the second dimension), resealed: refused too.
    bad = bytearray(img)
    struct.pack_into("<Q", bad, shape_at + 8, 6)
    rewrite(reseal(bad))
    with pytest.raises(sb.CorruptSegmentError, match="element_count"):
        sb.attach(name, timeout=0.2)
    # The exact cached header bytes over an object too small for its data area.
    rewrite(img[:H.FIXED_SIZE + 64 + 8])
    with pytest.raises(sb.CorruptSegmentError, match="data area"):
        sb.attach(name, timeout=0.2)
    # The cached header bytes with an invalid state word (not covered by the checksum).
    bad = bytearray(img)
    struct.pack_into("<I", bad, H.STATE_OFFSET, 7)
    rewrite(bad)
    with pytest.raises(sb.CorruptSegmentError, match="state 7"):
        sb.attach(name, timeout=0.2)
    # And the original bytes are still accepted, with their own shape.
    rewrite(img)
    assert _attached_shape(name) == (4, 5)


def test_the_cached_header_is_shared_but_cannot_be_changed(pya_name):
    name = pya_name()
    a = sb.ndarray((2, 2), "f", name=name)
    img = bytes(image_of(name))
    h = sb.header_of(a)
    fixed, table = img[:H.FIXED_SIZE], img[H.FIXED_SIZE:h.header_size]
    first = H.decode(fixed, table, len(img), H.STATE_READY, name)
    again = H.decode(bytearray(fixed), bytearray(table), len(img), H.STATE_READY, name)
    assert again == first and first.shape == h.shape == (2, 2)
    with pytest.raises(AttributeError):
        first.shape = (4,)
    assert isinstance(first.shape, tuple) and isinstance(first.fields, tuple)
    assert H.decode(fixed, table, len(img), H.STATE_READY, name).shape == (2, 2)
    # Another name, another size, another state: each its own decode, checked again.
    other = H.decode(fixed, table, len(img), H.STATE_RETIRED, name)
    assert other.state == H.STATE_RETIRED and first.state == H.STATE_READY
    with pytest.raises(sb.CorruptSegmentError, match="data area"):
        H.decode(fixed, table, len(img) - 1, H.STATE_READY, name)
    with pytest.raises(sb.CorruptSegmentError, match="state 3"):
        H.decode(fixed, table, len(img), 3, name)
    # The same through decode_image (the header read in one piece, as attach reads it).
    image = img[:h.header_size]
    first = H.decode_image(image, len(img), name)
    assert H.decode_image(image, len(img), name) == first and first.shape == (2, 2)
    with pytest.raises(AttributeError):
        first.shape = (4,)
    with pytest.raises(sb.CorruptSegmentError, match="data area"):
        H.decode_image(image, len(img) - 1, name)
    bad = bytearray(image)
    struct.pack_into("<I", bad, H.STATE_OFFSET, 3)
    with pytest.raises(sb.CorruptSegmentError, match="state 3"):
        H.decode_image(bytes(bad), len(img), name)
    struct.pack_into("<I", bad, H.STATE_OFFSET, H.STATE_RETIRED)
    assert H.decode_image(bytes(bad), len(img), name).state == H.STATE_RETIRED
    struct.pack_into("<Q", bad, h.header_size - 8, 3)   # padding after the shape (3.3)
    with pytest.raises(sb.CorruptSegmentError, match="header_crc32"):
        H.decode_image(bytes(bad), len(img), name)
    a.close()
