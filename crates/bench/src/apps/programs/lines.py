# A Python asyncio server: each connection's lines are answered with the server's count.
import asyncio
count = 0
async def serve(r, w):
    global count
    while await r.readline():
        count += 1
        w.write(b"%d\n" % count)
        await w.drain()
async def main():
    s = await asyncio.start_server(serve, "0.0.0.0", 8000)
    await s.serve_forever()
asyncio.run(main())
