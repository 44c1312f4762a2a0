# 1 TB of address space reserved and never used (PROT_NONE, as databases and JVMs do)
# beside 200 MB of data. Lines: PING answers PONG, SUM the data's SHA-256.
import ctypes, hashlib, os, socketserver
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
reserved = libc.mmap(None, 1 << 40, 0, 0x02 | 0x20, -1, 0)
assert reserved not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
data = bytearray(os.urandom(1 << 20)) * 200
for i in range(0, len(data), 4096):
    data[i] = i % 251
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            if line.strip() == b"SUM":
                self.wfile.write(hashlib.sha256(data).hexdigest().encode() + b"\n")
            else:
                self.wfile.write(b"PONG\n")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 7100), Handler).serve_forever()
