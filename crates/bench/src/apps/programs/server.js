// A Node.js HTTP server with keep-alive: each request is answered with the server's count.
const http = require("http");
let count = 0;
const server = http.createServer((req, res) => {
  count += 1;
  const body = `${count}\n`;
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 600000;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.listen(8080, "0.0.0.0");
