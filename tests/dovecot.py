"""A throwaway Dovecot for the tests: its own config, passwd-file users and Maildir in a temp dir, on free
loopback ports (plain with STARTTLS, and implicit TLS), started as a child process and stopped after.

In CI (CI=true) a missing Dovecot fails the run; elsewhere the tests that need it are skipped.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.certs import self_signed

USER = "gateway"
PASSWORD = "secret-imap-password"

CONFIG = """
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = dovecot-test-{imap}
log_path = {root}/dovecot.log
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth_mechanisms}
auth_username_format = %Ln
auth_failure_delay = 0
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
{oauth_passdb}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  mail_max_userip_connections = 200
  {capability}
}}
service imap-login {{
  {chroot}
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service anvil {{
  {anvil_chroot}
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    return shutil.which("dovecot") is not None or Path("/usr/sbin/dovecot").exists()


@dataclass
class Dovecot:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dc", dir="/tmp")))
    imap_port: int = field(default_factory=_free_port)
    imaps_port: int = field(default_factory=_free_port)
    idle: bool = True
    proc: subprocess.Popen[bytes] | None = None
    # An OAuth introspection endpoint: when set, XOAUTH2 and OAUTHBEARER logins are checked against it (Dovecot's
    # oauth2 passdb), and only PLAIN/LOGIN against the password file.
    introspection_url: str | None = None
    oauth_mechanisms: str = "xoauth2 oauthbearer"

    @property
    def cert(self) -> Path:
        return self.root / "cert.pem"

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert))
        return context

    def setup(self) -> None:
        root = self.root
        os.chmod(root, 0o755)
        for sub in ("run", "state", "home"):
            (root / sub).mkdir(exist_ok=True)
        self_signed(root / "key.pem", self.cert)
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        as_root = os.geteuid() == 0
        if as_root:
            uid = gid = 65534
            home = root / "home" / USER
            home.mkdir(exist_ok=True)
            os.chown(home, uid, gid)
            internal = ("dovecot", "dovecot", "dovenull")
            chroot, anvil_chroot = "chroot = login", "chroot = empty"
        else:
            uid, gid = os.getuid(), os.getgid()
            import grp
            import pwd

            me, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
            internal = (me, group, me)
            chroot = anvil_chroot = "chroot ="
        (root / "dovecot.conf").write_text(
            CONFIG.format(
                root=root,
                imap=self.imap_port,
                imaps=self.imaps_port,
                uid=uid,
                gid=gid,
                internal_user=internal[0],
                internal_group=internal[1],
                login_user=internal[2],
                chroot=chroot,
                anvil_chroot=anvil_chroot,
                capability="" if self.idle else "imap_capability = IMAP4rev1 LITERAL+ UIDPLUS MOVE",
                oauth_mechanisms=f" {self.oauth_mechanisms}" if self.introspection_url else "",
                oauth_passdb=self._oauth_passdb(),
            )
        )

    def _oauth_passdb(self) -> str:
        if not self.introspection_url:
            return ""
        (self.root / "oauth2.conf.ext").write_text(
            f"introspection_url = {self.introspection_url}\nintrospection_mode = post\n"
            "username_attribute = username\nusername_format = %Ln\n"
        )
        return (
            f"passdb {{\n  driver = oauth2\n  mechanisms = {self.oauth_mechanisms}\n"
            f"  args = {self.root}/oauth2.conf.ext\n}}\n"
        )

    def start(self) -> None:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.proc = subprocess.Popen(
            [binary, "-F", "-c", str(self.root / "dovecot.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- mail in and out, as another client would -----------------------------------------------------

    def client(self) -> imaplib.IMAP4:
        import imaplib

        conn = imaplib.IMAP4("127.0.0.1", self.imap_port)
        conn.login(USER, PASSWORD)
        return conn

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        conn = self.client()
        try:
            result, data = conn.append(mailbox, None, None, raw)
            assert result == "OK", data
        finally:
            conn.logout()

    def count(self, mailbox: str) -> int:
        conn = self.client()
        try:
            result, data = conn.select(mailbox, readonly=True)
            return int(data[0]) if result == "OK" else -1
        finally:
            conn.logout()

    def drop_into_maildir(self, raw: bytes) -> None:
        """Deliver like an MDA while the server is down: a file in Maildir/new."""
        import uuid

        new = self.root / "home" / USER / "Maildir" / "new"
        new.mkdir(parents=True, exist_ok=True)
        path = new / f"{int(time.time())}.{uuid.uuid4().hex}.test"
        path.write_bytes(raw)
        if os.geteuid() == 0:
            for p in (path, new, new.parent, new.parent / "cur", new.parent / "tmp"):
                if p.exists():
                    os.chown(p, 65534, 65534)
