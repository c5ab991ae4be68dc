// Shared by the interop scripts: a TCP relay that counts the bytes on the
// wire, and compressible test data.
import { once } from "node:events";
import net from "node:net";

/** A TCP relay to `targetPort` counting bytes each way, per request path. */
export async function countingRelay(targetPort) {
  const counts = {};
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    let entry = null;
    client.on("data", (data) => {
      if (!entry) {
        const path = data.toString("latin1").split(" ")[1] ?? "?";
        entry = counts[path] ??= { up: 0, down: 0 };
      }
      entry.up += data.length;
      upstream.write(data);
    });
    upstream.on("data", (data) => {
      if (entry) entry.down += data.length;
      client.write(data);
    });
    client.on("end", () => upstream.end());
    upstream.on("end", () => client.end());
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { port: server.address().port, counts, close: () => server.close() };
}

/** Compressible text like a feed of JSON events, `n` characters long. */
export function events(n) {
  let out = "";
  for (let i = 0; out.length < n; i++) {
    out += `{"seq":${i},"topic":"sensors/${i % 13}","value":${(i * 7) % 1000},"ok":true}`;
  }
  return out.slice(0, n);
}
