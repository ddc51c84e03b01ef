/**
 * The lab's built-in `echo` image: an HTTP (and plain TCP line) server that answers with who
 * it is, so that tests and users can see which pod a request reached and from which address
 * it came (the client address shows whether traffic was NATed on the way).
 */
import { createServer } from 'node:http';

export function serveEcho(port: number, signal?: AbortSignal, name?: string): Promise<void> {
  if (name) process.env.POD_NAME = name;
  const who = `${process.env.POD_NAME ?? 'echo'} ${process.env.POD_IP ?? ''}`.trim();
  const server = createServer((req, res) => {
    const body = JSON.stringify({ pod: process.env.POD_NAME ?? '', namespace: process.env.POD_NAMESPACE ?? '', podIP: process.env.POD_IP ?? '', node: process.env.NODE_NAME ?? '', client: req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '', path: req.url ?? '/' });
    res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': who });
    res.end(body + '\n');
  });
  server.keepAliveTimeout = 1000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => {
      console.log(`echo server ${who} listening on :${port}`);
    });
    signal?.addEventListener('abort', () => server.close(() => resolve()));
  });
}
