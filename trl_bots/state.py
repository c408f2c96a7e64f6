"""The selector state file: one safetensors file, written atomically, safe to load from anywhere.

Arrays are stored as safetensors tensors and the scalars (hyper-parameters, round counter,
RNG state) as JSON in the safetensors metadata, so loading never unpickles anything. A
CRC-32 of every array is stored beside it: a truncated or altered file is reported, never
read as valid. The file is written to a temporary name in the same folder, flushed to disk,
then renamed over the target, so a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import secrets
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save


STATE_FORMAT = "trl-bots-selector/1"
SELECTOR_FILE = "bots_selector.safetensors"  # the file name in checkpoints and saved model folders
_SCALARS_KEY = "__scalars__"  # the checksum entry of the JSON scalars; no array has this name


def _checksums(arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> dict[str, int]:
    """CRC-32 of every array and of the scalars (round counter, RNG state, ...), so no part can change unnoticed."""
    sums = {name: zlib.crc32(np.ascontiguousarray(array).view(np.uint8)) for name, array in arrays.items()}
    sums[_SCALARS_KEY] = zlib.crc32(json.dumps(scalars, sort_keys=True).encode())
    return sums


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, flushed, then renamed over ``path``:
    the file is whole whenever it exists. It gets the permissions of any new file (``0o666`` less the umask)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # os.open applies the umask, as open() does for the Trainer's files (tempfile.mkstemp would make it 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_state_file(path: str | os.PathLike, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
    """Write ``arrays`` and the JSON-serialisable ``scalars`` to ``path`` atomically."""
    path = Path(path)
    arrays = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    header = {"format": STATE_FORMAT, "scalars": scalars, "crc32": _checksums(arrays, scalars)}
    payload = save(arrays, metadata={"trl_bots": json.dumps(header)})
    write_atomic(path, payload)


def read_state_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a file written by :func:`write_state_file`; ``ValueError`` if it is not valid."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BOTS selector state file not found: {path}")
    raw = path.read_bytes()
    try:
        arrays = load(raw)
        header_length = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8 : 8 + header_length]).get("__metadata__") or {}
        header = json.loads(metadata["trl_bots"])
    except (SafetensorError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} is not a valid BOTS selector state file ({error}). It may be truncated or from another "
            "program; resume from an earlier checkpoint or delete the file to start the selector afresh."
        ) from error
    if header.get("format") != STATE_FORMAT:
        raise ValueError(
            f"{path} has format {header.get('format')!r}; this version of trl-bots reads {STATE_FORMAT!r}."
        )
    if _checksums(arrays, header.get("scalars")) != header.get("crc32"):
        raise ValueError(
            f"{path} is corrupt: its contents do not match the checksums stored with them. Resume from an earlier "
            "checkpoint."
        )
    return arrays, header["scalars"]
