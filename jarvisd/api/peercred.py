"""Who is on the other end of a Unix socket: SO_PEERCRED (Linux), LOCAL_PEERCRED (macOS)."""

from __future__ import annotations

import socket
import struct
import sys

# macOS <sys/un.h>: SOL_LOCAL = 0, LOCAL_PEERCRED = 1; struct xucred starts with
# u_int cr_version, uid_t cr_uid.
_SOL_LOCAL = 0
_LOCAL_PEERCRED = 1


def peer_uid(sock: socket.socket) -> int:
    """The effective uid of the peer process; OSError when the platform cannot tell."""
    platform: str = sys.platform  # a plain str: the answer depends on where we run
    if platform.startswith("linux"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    if platform == "darwin" or "bsd" in platform:
        creds = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, struct.calcsize("2I") + 2 + 16 * 4)
        _version, uid = struct.unpack_from("2I", creds)
        return int(uid)
    raise OSError(f"peer credentials are not supported on {platform}")
