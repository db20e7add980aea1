"""A throwaway self-signed certificate for the test servers (Dovecot, aiosmtpd with STARTTLS)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(key: Path, cert: Path) -> None:
    """An EC key and a certificate for localhost and 127.0.0.1, valid two days (Debian's openssl)."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
