"""Is an image file whole? The checks `ibisagent.image_io` runs before SimpleITK reads a file.

SimpleITK reads some damaged files without a word: a ``.nii.gz`` whose gzip stream ends early, or
a ``.nii`` with fewer bytes than its header declares, comes back as a volume whose missing voxels
are zeros; a truncated JPEG is filled with grey; NaN voxels of a NIfTI file become 0. Other
formats fail, but with messages that do not say the file is damaged (a MetaImage whose data
file is missing answers "No such file or directory" about a file the user never named). So
before the read, `check_whole` looks at the file itself:

- NIfTI-1 and NIfTI-2 (``.nii``, ``.nii.gz``): the header's dimensions, data type and voxel
  offset give the bytes the voxels need; a gzip stream is read to its end (its end-of-stream
  marker and CRC checked) and its length compared, a plain file's size compared. Float voxels
  are checked for NaN and infinity on the way, since SimpleITK would turn them into 0.
- NRRD (``.nrrd``, ``.nhdr``): the header's sizes and type against the data, attached or in its
  data file(s), which must exist; raw, gzip and bzip2 encodings (text encodings are left to the
  reader).
- MetaImage (``.mha``, ``.mhd``): ``DimSize``, ``ElementType`` and channels against the data,
  local or in ``ElementDataFile``, which must exist; zlib-compressed data is inflated to its end.
- PNG and JPEG: decoded completely with Pillow, which refuses a truncated file.

Hand-written with the standard library (gzip, bz2, zlib, struct) and numpy: the engine core
depends only on numpy, scipy, SimpleITK and Pillow, and reading these headers takes a few dozen
lines each (nibabel and pynrrd would each add a dependency for one check). Streams are read in
chunks, so a check holds about one megabyte at a time, whatever the file's size.
"""

from __future__ import annotations

import bz2
import gzip
import os
import struct
import zlib
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

CHUNK = 1 << 20


class DamagedFileError(ValueError):
    """The file is cut short, its data file is missing, or its compressed stream is broken."""


class NonFiniteError(ValueError):
    """The file holds NaN or infinite values."""


def damaged(path: str, why: str) -> DamagedFileError:
    return DamagedFileError(f"The file {path} is damaged: {why}. Copy or export it again; "
                            "it was not read, so nothing was made from it.")


def not_this_format(path: str, what: str) -> ValueError:
    return ValueError(f"Could not read {path}: it is not a {what} file.")


def non_finite(path: str) -> NonFiniteError:
    return NonFiniteError(f"{path} contains NaN or infinite values; fix or mask them before segmenting.")


def check_whole(path: str) -> None:
    """Raise `DamagedFileError` (or `NonFiniteError` for NaN/inf NIfTI voxels) unless ``path``
    holds every byte its header declares. Formats not listed in the module docstring pass."""
    name = os.path.basename(path).lower()
    if name.endswith((".nii", ".nii.gz")):
        _check_nifti(path, name.endswith(".gz"))
    elif name.endswith((".nrrd", ".nhdr")):
        _check_nrrd(path)
    elif name.endswith((".mha", ".mhd")):
        _check_metaimage(path)
    elif name.endswith((".png", ".jpg", ".jpeg")):
        _check_picture(path)


# -- streams -------------------------------------------------------------------------------------
def _file_chunks(path: str, start: int = 0) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                return
            yield chunk


def _gzip_chunks(path: str, start: int = 0, source: Optional[str] = None) -> Iterator[bytes]:
    """The decompressed bytes of the gzip stream(s) in ``source`` (default ``path``) from
    ``start`` to the end; a stream that ends early or fails its CRC raises `DamagedFileError`
    about ``path``."""
    with open(source or path, "rb") as raw:
        raw.seek(start)
        if raw.read(2) != b"\x1f\x8b":
            raise not_this_format(source or path, "gzip-compressed")
        raw.seek(start)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        return
                    yield chunk
        except EOFError:
            raise damaged(path, "its gzip stream ends early (the file was cut short)") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as error:
            raise damaged(path, f"its gzip stream is broken ({error})") from None


def _bzip2_chunks(path: str, start: int = 0, source: Optional[str] = None) -> Iterator[bytes]:
    decompressor = bz2.BZ2Decompressor()
    try:
        for chunk in _file_chunks(source or path, start):
            while chunk:
                yield decompressor.decompress(chunk)
                if decompressor.eof and decompressor.unused_data:  # another stream follows
                    chunk, decompressor = decompressor.unused_data, bz2.BZ2Decompressor()
                else:
                    chunk = b""
    except (OSError, ValueError) as error:
        raise damaged(path, f"its bzip2 stream is broken ({error})") from None
    if not decompressor.eof:
        raise damaged(path, "its bzip2 stream ends early (the file was cut short)")


def _zlib_chunks(path: str, start: int = 0, source: Optional[str] = None) -> Iterator[bytes]:
    decompressor = zlib.decompressobj()
    try:
        for chunk in _file_chunks(source or path, start):
            yield decompressor.decompress(chunk)
            if decompressor.eof:
                break
        yield decompressor.flush()
    except zlib.error as error:
        raise damaged(path, f"its compressed data is broken ({error})") from None
    if not decompressor.eof:
        raise damaged(path, "its compressed data ends early (the file was cut short)")


def _count(chunks: Iterator[bytes], on_data: Optional[Callable[[bytes], None]] = None) -> int:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if on_data is not None:
            on_data(chunk)
    return total


def _need(path: str, have: int, need: int, what: str = "the voxels") -> None:
    if have < need:
        raise damaged(path, f"its header declares {need} bytes of {what}, but it holds only {have} "
                            "(the file was cut short)")


# -- NIfTI ---------------------------------------------------------------------------------------
#: NIfTI datatype codes of real floats -> numpy type letter, the only types that can hold NaN.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def _nifti_layout(path: str, header: bytes) -> Tuple[int, int, Optional[np.dtype]]:
    """(data offset, bytes of data, float dtype or None) from a NIfTI-1 or -2 header."""
    for endian in ("<", ">"):
        if len(header) >= 4 and struct.unpack(endian + "i", header[:4])[0] in (348, 540):
            break
    else:
        raise not_this_format(path, "NIfTI")
    size = struct.unpack(endian + "i", header[:4])[0]
    if size == 348:
        if len(header) < 348:
            raise damaged(path, "its NIfTI header is cut short")
        dims = struct.unpack(endian + "8h", header[40:56])
        datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
        offset = int(struct.unpack(endian + "f", header[108:112])[0])
    else:
        if len(header) < 540:
            raise damaged(path, "its NIfTI-2 header is cut short")
        datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
        dims = struct.unpack(endian + "8q", header[16:80])
        offset = struct.unpack(endian + "q", header[168:176])[0]
    rank = dims[0]
    if not 1 <= rank <= 7:
        raise damaged(path, f"its NIfTI header gives {rank} dimensions")
    voxels = 1
    for extent in dims[1:rank + 1]:
        voxels *= max(int(extent), 1)
    dtype = np.dtype(endian + _NIFTI_FLOATS[datatype]) if datatype in _NIFTI_FLOATS else None
    return max(offset, size), voxels * max(int(bitpix), 0) // 8, dtype


class _FiniteScan:
    """Feeds the bytes of a stream through; raises `NonFiniteError` at the first NaN or inf in
    the float data between ``offset`` and ``offset + length``."""

    def __init__(self, path: str, offset: int, length: int, dtype: np.dtype) -> None:
        self.path, self.offset, self.end, self.dtype = path, offset, offset + length, dtype
        self.position = 0
        self.carry = b""

    def __call__(self, chunk: bytes) -> None:
        start, self.position = self.position, self.position + len(chunk)
        low, high = max(self.offset - start, 0), min(self.end - start, len(chunk))
        if low >= high:
            return
        data = self.carry + chunk[low:high]
        whole = len(data) - len(data) % self.dtype.itemsize
        self.carry = data[whole:]
        if whole and not np.isfinite(np.frombuffer(data[:whole], dtype=self.dtype)).all():
            raise non_finite(self.path)


def _check_nifti(path: str, compressed: bool) -> None:
    if compressed:
        chunks = _gzip_chunks(path)
        first = b""
        for chunk in chunks:  # enough for either header
            first += chunk
            if len(first) >= 544:
                break
        offset, length, dtype = _nifti_layout(path, first)
        scan = _FiniteScan(path, offset, length, dtype) if dtype is not None else None
        if scan is not None:
            scan(first)
        have = len(first) + _count(chunks, scan)
    else:
        with open(path, "rb") as handle:
            first = handle.read(544)
        offset, length, dtype = _nifti_layout(path, first)
        have = os.path.getsize(path)
        if dtype is not None and have >= offset + length:
            _count(_file_chunks(path), _FiniteScan(path, offset, length, dtype))
    _need(path, have, offset + length, "header and voxels")


# -- NRRD ----------------------------------------------------------------------------------------
_NRRD_SIZES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                     "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                     "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int",
                     "int64", "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64",
                     "uint64_t", "double"), 8),
}
_HEADER_LIMIT = 1 << 20


def _header_lines(path: str, is_end: Callable[[str], bool]) -> Tuple[List[str], int]:
    """The header's lines (decoded) and the byte offset just past it; a line for which
    ``is_end`` is true ends it (and is included)."""
    lines, offset = [], 0
    with open(path, "rb") as handle:
        while offset < _HEADER_LIMIT:
            raw = handle.readline(_HEADER_LIMIT)
            if not raw:
                break
            offset += len(raw)
            line = raw.decode("latin-1").rstrip("\r\n")
            lines.append(line)
            if is_end(line):
                break
    return lines, offset


def _pattern_files(value: str, folder: str) -> Optional[List[str]]:
    """Files named by a "<format> <min> <max> <step>" data file pattern (NRRD and MetaImage)."""
    parts = value.split()
    if len(parts) < 4 or "%" not in parts[0]:
        return None
    try:
        low, high, step = int(parts[1]), int(parts[2]), int(parts[3])
        names = [parts[0] % number for number in range(low, high + (1 if step > 0 else -1), step or 1)]
    except (TypeError, ValueError):
        return None
    return [os.path.join(folder, name) for name in names]


def _check_data_files(path: str, files: List[str]) -> None:
    for data_file in files:
        if not os.path.isfile(data_file):
            raise damaged(path, f"its data file {data_file} is missing")


def _check_nrrd(path: str) -> None:
    lines, header_end = _header_lines(path, lambda line: line == "")
    if not lines or not lines[0].startswith("NRRD"):
        raise not_this_format(path, "NRRD")
    fields: Dict[str, str] = {}
    listed: List[str] = []
    for index, line in enumerate(lines[1:], start=1):
        if line.startswith("#") or ":" not in line or line[line.index(":"):].startswith(":="):
            continue  # comments and key:=value pairs
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() in ("data file", "datafile") and value.strip().upper().startswith("LIST"):
            listed = [entry for entry in lines[index + 1:] if entry]
            break
    folder = os.path.dirname(os.path.abspath(path))
    data_file = fields.get("data file", fields.get("datafile"))
    files: Optional[List[str]] = None
    if data_file is not None:
        if data_file.upper().startswith("LIST"):
            files = [os.path.join(folder, name) for name in listed]
        else:
            files = _pattern_files(data_file, folder) or [os.path.join(folder, data_file)]
        _check_data_files(path, files)
    elif path.lower().endswith(".nhdr"):
        raise damaged(path, "its header names no data file")
    try:
        voxels = int(np.prod([int(v) for v in fields.get("sizes", "").split()], dtype=np.int64))
    except ValueError:
        raise damaged(path, f"its sizes {fields.get('sizes')!r} are not whole numbers") from None
    item = _NRRD_SIZES.get(fields.get("type", "").lower())
    if item is None or not fields.get("sizes") or int(fields.get("line skip", fields.get("lineskip", "0"))) != 0:
        return
    skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    if files is not None and len(files) != 1:
        return  # several data files: each was checked to exist
    source, start = (files[0], 0) if files is not None else (path, header_end)
    encoding = fields.get("encoding", "raw").lower()
    if encoding == "raw":
        if skip >= 0:
            _need(path, os.path.getsize(source) - start - skip, voxels * item)
    elif encoding in ("gzip", "gz"):
        _need(path, _count(_gzip_chunks(path, start, source)) - max(skip, 0), voxels * item)
    elif encoding in ("bzip2", "bz2"):
        _need(path, _count(_bzip2_chunks(path, start, source)) - max(skip, 0), voxels * item)


# -- MetaImage -----------------------------------------------------------------------------------
_MET_SIZES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _check_metaimage(path: str) -> None:
    lines, header_end = _header_lines(path, lambda line: line.split("=", 1)[0].strip().lower() == "elementdatafile")
    fields = {}
    for line in lines:
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip().lower()] = value.strip()
    if "ndims" not in fields and "dimsize" not in fields:
        raise not_this_format(path, "MetaImage")
    data_file = fields.get("elementdatafile")
    if data_file is None:
        raise damaged(path, "its header names no data (ElementDataFile), so it was cut short")
    folder = os.path.dirname(os.path.abspath(path))
    if data_file.upper() == "LOCAL":
        source, start = path, header_end
    elif data_file.upper().startswith("LIST"):
        return  # the file names follow; rare, and the reader checks them
    else:
        files = _pattern_files(data_file, folder) or [os.path.join(folder, data_file)]
        _check_data_files(path, files)
        if len(files) != 1:
            return
        source, start = files[0], 0
    element = fields.get("elementtype", "").upper()
    item = _MET_SIZES.get(element[:-6] if element.endswith("_ARRAY") else element)
    try:
        voxels = int(np.prod([int(v) for v in fields.get("dimsize", "").split()], dtype=np.int64))
        channels = int(fields.get("elementnumberofchannels", "1"))
        header_size = int(fields.get("headersize", "0"))
    except ValueError:
        raise damaged(path, "its DimSize, ElementNumberOfChannels or HeaderSize is not a whole number") from None
    needed = voxels * channels * (item or 0)
    if fields.get("compresseddata", "false").lower() == "true":
        have = _count(_zlib_chunks(path, start, source))
        if item:
            _need(path, have, needed)
    elif item and header_size >= 0:
        _need(path, os.path.getsize(source) - start - header_size, needed)


# -- pictures ------------------------------------------------------------------------------------
def _check_picture(path: str) -> None:
    from PIL import Image

    try:
        with Image.open(path) as picture:
            picture.load()
    except Image.DecompressionBombError:
        return  # too large for Pillow's own guard; the memory budget decides, SimpleITK reads it
    except (OSError, SyntaxError, ValueError) as error:
        raise damaged(path, f"it cannot be decoded to its end ({error})") from None
