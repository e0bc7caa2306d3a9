"""Play one boltkit stub script on 127.0.0.1 until the client says GOODBYE.

Run with the boltkit venv's Python: `python stub.py SCRIPT [IDLE_SECONDS]`.
boltkit's own `boltstub` waits for its server thread in a busy loop, which
would burn a core beside the tests; this joins the thread instead and binds
port 0, printing `ready PORT` once it listens (logs go to stderr).

boltkit reads each message chunk with a single `recv(size)`, which returns
less than `size` when a big message (a sync's batch of 600 notes' links,
tens of kilobytes) arrives in pieces: the stub then took the rest of the
chunk for the next chunk's header and waited for ever for bytes the client
never sends, holding the connection open and silent. Accepted connections
here read whole chunks.

Exit status: 0 the script was played to its end, 1 the client went off
script or stopped early, 2 nothing happened for IDLE_SECONDS (default 30).
"""

import logging
import socket
import sys

from boltkit.server import Peer, StubServer


class WholeReads(socket.socket):
    """A connection whose `recv(size)` returns `size` bytes unless the peer closes."""

    def recv(self, size, flags=0):
        data = b""
        while len(data) < size:
            part = super().recv(size - len(data), flags)
            if not part:
                break
            data += part
        return data


class Server(StubServer):
    def accept(self, sock):
        accepted, address = sock.accept()
        connection = WholeReads(accepted.family, accepted.type, fileno=accepted.detach())
        self.peers[connection] = Peer(connection, address)
        logging.getLogger("boltkit").info("Accepted incoming connection from «%s»", address)


def main() -> int:
    script = sys.argv[1]
    idle = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG, format="%(message)s")
    server = Server(("127.0.0.1", 0), script, timeout=idle)
    print("ready", server.server.getsockname()[1], flush=True)
    server.start()
    server.join()
    if server.exit_code:
        return int(server.exit_code)
    return 1 if server.script else 0


if __name__ == "__main__":
    sys.exit(main())
