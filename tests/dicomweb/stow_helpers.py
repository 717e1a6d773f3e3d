"""Build and send raw STOW-RS requests, byte for byte as the test decides."""

from __future__ import annotations

import secrets

import httpx


def multipart_body(parts: list[bytes], boundary: str, part_type: str) -> bytes:
    """A multipart/related body with one part per payload."""
    chunks: list[bytes] = []
    for payload in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode())
        chunks.append(payload)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def post_instances(
    dicomweb_url: str,
    parts: list[bytes],
    study: str | None = None,
    part_type: str = "application/dicom",
    content_type: str | None = None,
) -> httpx.Response:
    """POST the parts to /studies (or /studies/{study}) and return the answer."""
    boundary = secrets.token_hex(8)
    body = multipart_body(parts, boundary, part_type)
    url = f"{dicomweb_url}/studies" + (f"/{study}" if study else "")
    header = content_type or (
        f'multipart/related; type="{part_type}"; boundary={boundary}'
    )
    return httpx.post(
        url,
        content=body,
        headers={"Content-Type": header, "Accept": "application/dicom+json"},
        timeout=60,
    )
