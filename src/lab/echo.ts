/**
 * The lab's built-in `echo` image: an HTTP (and plain TCP line) server that answers with who
 * it is, so that tests and users can see which pod a request reached and from which address
 * it came (the client address shows whether traffic was NATed on the way).
 *
 * On SIGTERM it behaves as a well-mannered server in Kubernetes must: the kubelet signals the
 * container at the same moment the pod's endpoint is marked terminating, and every node's proxy
 * needs a moment to stop sending new connections to it. So the server keeps accepting for
 * `drainMs` (answering with `Connection: close`, so kept-alive clients move on), then closes.
 * Closing at once would refuse the connections that were already on their way.
 */
import { createServer } from 'node:http';

export function serveEcho(port: number, signal?: AbortSignal, name?: string, drainMs = 0): Promise<void> {
  if (name) process.env.POD_NAME = name;
  const who = `${process.env.POD_NAME ?? 'echo'} ${process.env.POD_IP ?? ''}`.trim();
  let draining = false;
  const server = createServer((req, res) => {
    const body = JSON.stringify({ pod: process.env.POD_NAME ?? '', namespace: process.env.POD_NAMESPACE ?? '', podIP: process.env.POD_IP ?? '', node: process.env.NODE_NAME ?? '', client: req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '', path: req.url ?? '/' });
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-served-by': who };
    if (draining) headers.connection = 'close';
    res.writeHead(200, headers);
    res.end(body + '\n');
  });
  server.keepAliveTimeout = 1000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => {
      console.log(`echo server ${who} listening on :${port}`);
    });
    signal?.addEventListener('abort', () => {
      draining = true;
      server.closeIdleConnections();
      const close = (): void => {
        server.close(() => resolve());
        server.closeIdleConnections();
      };
      if (drainMs > 0) setTimeout(close, drainMs);
      else close();
    });
  });
}
