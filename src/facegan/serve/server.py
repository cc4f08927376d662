"""Running the app on uvicorn: bind the address, say where the page is, serve until Ctrl-C."""
from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
import sys

import uvicorn

from ..api import FaceGenerator
from .app import create_app
from .config import ServeConfig

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process (as MALLOC_ARENA_MAX would); False where malloc is not glibc's.

    glibc gives threads up to 8 arenas per core, and each keeps freed memory for itself; torch's OpenMP threads
    would each hold some. With two, the render thread's malloc_trim after each request reaches nearly all of it.
    Must run before those threads first allocate. A MALLOC_ARENA_MAX in the environment wins.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: assume it is reachable from elsewhere
        return False


def page_url(host: str, port: int) -> str:
    host = WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def exposure_warning(host: str, port: int) -> str | None:
    """The warning printed when the server listens on more than loopback; None when it does not."""
    if is_loopback(host):
        return None
    return (f"warning: listening on {host}, not only on this machine: anyone who can reach it on port {port} "
            "can use the page and the API (no login, no TLS). Use --host 127.0.0.1 to keep it local.")


BACKLOG = 2048  # uvicorn's default


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound socket, so a taken port is an ordinary error here, and port 0 tells which port it got.

    What goes wrong comes back as one line naming the option at fault (ValueError), not as errno text.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError):  # socket.gaierror; UnicodeError: a label longer than 63 characters
        raise ValueError(host_error(host)) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        # Listening now, before the address is printed: a browser that connects while the app still starts
        # waits in the backlog instead of being refused.
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise ValueError(bind_error(host, port, error)) from None
    return sock


def host_error(host: str) -> str:
    return f"--host {host}: not an address or host name this machine can listen on"


def bind_error(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRNOTAVAIL:
        return host_error(host)
    if error.errno == errno.EADDRINUSE:
        return f"--port {port}: already in use on {host} (another server?); pick another, or --port 0 for any free one"
    if error.errno in (errno.EACCES, errno.EPERM):
        return (f"--port {port}: this user may not listen on it (ports below 1024 need administrator rights); "
                "pick another, or --port 0 for any free one")
    reason = error.strerror or str(error)
    return f"cannot listen on {host} port {port}: {reason[0].lower()}{reason[1:]}"


def run_server(generator: FaceGenerator, config: ServeConfig) -> None:
    """Serve the page for `generator` at config.host:config.port until interrupted (blocks)."""
    config.validate()
    limit_malloc_arenas()
    app = create_app(generator)
    with bind_socket(config.host, config.port) as sock:
        port = sock.getsockname()[1]
        print(f"facegan serve: open {page_url(config.host, port)}  (Ctrl-C stops)", flush=True)
        warning = exposure_warning(config.host, port)
        if warning:
            print(f"facegan serve: {warning}", file=sys.stderr, flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level=config.log_level)).run(sockets=[sock])
