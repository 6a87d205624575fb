"""Forward TCP connections from one address to another, bytes as they come (TLS passes through).

    python -m tfjob_localcluster.forward LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT

The API server listens on loopback alone; a real node's pods reach it at the node's address
(the `kubernetes` Service's endpoint), through this, which runs while the node does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(connected, *listen)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    listen_host, listen_port, target_host, target_port = argv
    asyncio.run(serve((listen_host, int(listen_port)), (target_host, int(target_port))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
