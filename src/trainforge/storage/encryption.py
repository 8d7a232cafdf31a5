"""Encryption at rest for the local object store: a streaming, chunked AES-256-GCM object format.

Format (all integers big-endian)::

    MAGIC (8 bytes)  key-id length (u16)  key id (UTF-8)  chunk size (u32)  salt (16 bytes)
    chunk 0 ... chunk n-1        each: AES-GCM(object key, nonce_i, plaintext_i, aad=header) = ciphertext + 16-byte tag

Every object gets its own AES key, derived from the *data key* of its key id with HKDF-SHA256 over a random
salt, so nonces never repeat under one key: nonce ``i`` is the 11-byte chunk counter followed by one byte that is
1 on the last chunk and 0 before it (the STREAM construction). Every chunk but the last holds exactly
``chunk size`` plaintext bytes; the last one holds fewer (possibly none), so a cut, a reordering, a dropped or an
appended chunk, or any changed byte (the header is authenticated data of every chunk) fails decryption with
:class:`~trainforge.errors.StorageError`. The cryptography comes whole from the ``cryptography`` package.

Data keys are 32 random bytes per key id (``KmsKeyId``), held by the server (:class:`KeyDirectory`); other
processes reach them through a :class:`Keyring` that asks the server (:class:`CallbackKeyring`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from trainforge.errors import StorageError, ValidationError

MAGIC = b"\x89TFENC\r\n"
"""The first 8 bytes of every encrypted object (a high byte and CR LF, as PNG's, so text never starts so)."""
DEFAULT_CHUNK = 1024 * 1024
TAG = 16
SALT = 16
KEY_BYTES = 32
MAX_KEY_ID = 2048
_FIXED = len(MAGIC) + 2  # magic + key-id length
_HKDF_INFO = b"trainforge object encryption v1"


@dataclass(frozen=True)
class Header:
    """The parsed header of an encrypted object."""

    key_id: str
    chunk_size: int
    salt: bytes
    raw: bytes

    @property
    def size(self) -> int:
        """The header's length in bytes."""
        return len(self.raw)

    def plaintext_size(self, stored_size: int) -> int:
        """The size of the content an object of ``stored_size`` bytes (header included) decrypts to."""
        body = stored_size - self.size
        block = self.chunk_size + TAG
        full = body // block
        if body % block < TAG:  # the last chunk is at least a tag; a body of whole blocks was cut
            return max(0, body - TAG * max(full, 1))
        return body - TAG * (full + 1)


def key_file_name(key_id: str) -> str:
    """The file a key id's data key is kept in: the SHA-256 of the key id, so any string is a safe name."""
    return hashlib.sha256(key_id.encode("utf-8")).hexdigest() + ".key"


def check_key_id(key_id: str, *, field: str = "KmsKeyId") -> str:
    """``key_id`` if it is a usable key id (1-2048 characters, no control characters); else ValidationError."""
    if not key_id or len(key_id) > MAX_KEY_ID or any(ord(c) < 32 for c in key_id):
        raise ValidationError(f"{field}: a key id must be 1-{MAX_KEY_ID} printable characters", field=field)
    return key_id


def _object_cipher(data_key: bytes, salt: bytes) -> AESGCM:
    if len(data_key) != KEY_BYTES:
        raise StorageError(f"a data key must be {KEY_BYTES} bytes, got {len(data_key)}")
    derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=_HKDF_INFO).derive(data_key)
    return AESGCM(derived)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def make_header(key_id: str, chunk_size: int = DEFAULT_CHUNK, salt: bytes | None = None) -> Header:
    """A fresh header (random salt unless given) for an object encrypted under ``key_id``."""
    encoded = check_key_id(key_id).encode("utf-8")
    salt = secrets.token_bytes(SALT) if salt is None else salt
    raw = MAGIC + struct.pack(">H", len(encoded)) + encoded + struct.pack(">I", chunk_size) + salt
    return Header(key_id, chunk_size, salt, raw)


def parse_header(data: bytes, *, where: str = "object") -> Header | None:
    """The header at the start of ``data`` (which must hold the whole header); None if ``data`` is not
    encrypted (does not start with :data:`MAGIC`). A damaged header raises ``StorageError``."""
    if not data.startswith(MAGIC):
        return None
    if len(data) < _FIXED:
        raise StorageError(f"{where}: truncated encryption header")
    (length,) = struct.unpack(">H", data[len(MAGIC) : _FIXED])
    end = _FIXED + length + 4 + SALT
    if length == 0 or len(data) < end:
        raise StorageError(f"{where}: truncated encryption header")
    try:
        key_id = data[_FIXED : _FIXED + length].decode("utf-8")
    except UnicodeDecodeError:
        raise StorageError(f"{where}: damaged encryption header") from None
    (chunk_size,) = struct.unpack(">I", data[_FIXED + length : _FIXED + length + 4])
    if chunk_size < 1:
        raise StorageError(f"{where}: damaged encryption header")
    return Header(key_id, chunk_size, data[end - SALT : end], data[:end])


def header_bytes_needed(prefix: bytes) -> int:
    """How many leading bytes hold the whole header, given at least its first :data:`_FIXED` bytes."""
    (length,) = struct.unpack(">H", prefix[len(MAGIC) : _FIXED])
    return _FIXED + length + 4 + SALT


def read_header(read: Callable[[int], bytes], *, where: str = "object") -> tuple[Header | None, bytes]:
    """Read just enough of a stream to tell whether it is encrypted.

    Returns the header (None when not encrypted) and the bytes read past it (for a plaintext object: every
    byte read so far, which the caller must use before reading on).
    """
    start = _read_exactly(read, _FIXED)
    if not start.startswith(MAGIC) or len(start) < _FIXED:
        return None, start
    rest = _read_exactly(read, header_bytes_needed(start) - _FIXED)
    header = parse_header(start + rest, where=where)
    return header, b""


def _read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    out = b""
    while len(out) < size:
        block = read(size - len(out))
        if not block:
            break
        out += block
    return out


def encrypt_chunks(
    blocks: Iterable[bytes], data_key: bytes, key_id: str, *, chunk_size: int = DEFAULT_CHUNK
) -> Iterator[bytes]:
    """The encrypted form of the content ``blocks`` yield (any sizes), header first, one chunk at a time."""
    header = make_header(key_id, chunk_size)
    cipher = _object_cipher(data_key, header.salt)
    yield header.raw
    buffer = bytearray()
    index = 0
    for block in blocks:
        buffer += block
        # Keep at least one byte back: the last chunk must be shorter than a full one.
        while len(buffer) > chunk_size:
            yield cipher.encrypt(_nonce(index, False), bytes(buffer[:chunk_size]), header.raw)
            del buffer[:chunk_size]
            index += 1
    if len(buffer) == chunk_size:
        yield cipher.encrypt(_nonce(index, False), bytes(buffer), header.raw)
        buffer.clear()
        index += 1
    yield cipher.encrypt(_nonce(index, True), bytes(buffer), header.raw)


def encrypt_bytes(data: bytes, data_key: bytes, key_id: str, *, chunk_size: int = DEFAULT_CHUNK) -> bytes:
    """``data`` in the encrypted format (for small objects and tests)."""
    return b"".join(encrypt_chunks([data], data_key, key_id, chunk_size=chunk_size))


def decrypt_chunks(
    read: Callable[[int], bytes], header: Header, data_key: bytes, *, where: str = "object"
) -> Iterator[bytes]:
    """The plaintext of an encrypted object whose header was already read, from ``read`` (the bytes after it).

    Raises ``StorageError`` (naming ``where``) when the object was changed, cut or extended, or ``data_key`` is
    not its key.
    """
    cipher = _object_cipher(data_key, header.salt)
    block = header.chunk_size + TAG
    index = 0
    current = _read_exactly(read, block)
    while True:
        nxt = _read_exactly(read, block) if len(current) == block else b""
        last = len(current) < block
        if last and len(current) < TAG:
            raise StorageError(f"{where}: the encrypted object is truncated or damaged")
        try:
            plain = cipher.decrypt(_nonce(index, last), current, header.raw)
        except InvalidTag:
            raise StorageError(
                f"{where}: cannot decrypt with the key of '{header.key_id}' (the object was changed, cut, or "
                "encrypted under another key)"
            ) from None
        if plain:
            yield plain
        if last:
            if read(1):
                raise StorageError(f"{where}: unexpected bytes after the last encrypted chunk")
            return
        if not nxt:
            raise StorageError(f"{where}: the encrypted object is truncated (its last chunk is missing)")
        current = nxt
        index += 1


def decrypt_bytes(data: bytes, data_key: bytes, *, where: str = "object") -> bytes:
    """The plaintext of the encrypted object ``data``; ``StorageError`` if it is not one or does not decrypt."""
    header = parse_header(data, where=where)
    if header is None:
        raise StorageError(f"{where}: not an encrypted object")
    view = memoryview(data)[header.size :]
    pos = 0

    def read(size: int) -> bytes:
        nonlocal pos
        out = bytes(view[pos : pos + size])
        pos += len(out)
        return out

    return b"".join(decrypt_chunks(read, header, data_key, where=where))


class Keyring(Protocol):
    """Where an object store gets data keys."""

    def data_key(self, key_id: str, *, uri: str, for_write: bool) -> bytes:
        """The 32-byte data key of ``key_id``, to write (``for_write``) or to read the object at ``uri``.

        Raises:
            StorageError: The key cannot be had (or ``PermissionDeniedError``: the caller may not have it).
        """
        ...


class KeyDirectory:
    """The server's data keys: one file ``<dir>/<sha256(key id)>.key`` (mode 0600) per key id, made on first
    write. The directory is made 0700."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, key_id: str) -> Path:
        """The file that holds the data key of ``key_id``."""
        return self.directory / key_file_name(check_key_id(key_id))

    def data_key(self, key_id: str, *, uri: str = "", for_write: bool = False) -> bytes:
        """The data key of ``key_id``; a write creates it on first use (atomically: concurrent creators agree)."""
        path = self.path(key_id)
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            if not for_write:
                raise StorageError(
                    f"{uri or 'object'}: its key '{key_id}' is not held by this server (the object was encrypted "
                    "by another server, or the key file was removed)"
                ) from None
            key = self._create(path)
        except OSError as exc:
            raise StorageError(f"cannot read the data key of '{key_id}': {exc}") from None
        if len(key) != KEY_BYTES:
            raise StorageError(f"the data key file {path} is damaged ({len(key)} bytes, expected {KEY_BYTES})")
        return key

    def _create(self, path: Path) -> bytes:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".new-", dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(secrets.token_bytes(KEY_BYTES))
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, 0o600)
                with contextlib.suppress(FileExistsError):  # another process made it first: its key wins
                    os.link(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
            return path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot create a data key in {self.directory}: {exc}") from None


class CallbackKeyring:
    """A keyring that asks ``fetch(key_id, uri, for_write)`` (e.g. the server over HTTP) and caches answers.

    A read key is cached per key id, whatever object it was asked for: the server already allowed this caller
    that key once.
    """

    def __init__(self, fetch: Callable[[str, str, bool], bytes]) -> None:
        self._fetch = fetch
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def data_key(self, key_id: str, *, uri: str, for_write: bool) -> bytes:
        """The cached key of ``key_id``, else the fetched one."""
        with self._lock:
            cached = self._keys.get(key_id)
        if cached is not None:
            return cached
        key = self._fetch(key_id, uri, for_write)
        if len(key) != KEY_BYTES:
            raise StorageError(f"the server sent a data key of {len(key)} bytes for '{key_id}'")
        with self._lock:
            self._keys[key_id] = key
        return key


def job_kms_key_id(spec: Mapping[str, Any]) -> str | None:
    """The key id a job's writes are encrypted under: ``OutputDataConfig.KmsKeyId``, else
    ``ResourceConfig.VolumeKmsKeyId`` (SDK ``output_kms_key``, ``volume_kms_key``); None for neither."""
    output = spec.get("OutputDataConfig") or {}
    resource = spec.get("ResourceConfig") or {}
    for value in (output.get("KmsKeyId"), resource.get("VolumeKmsKeyId")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
