import { createServer } from "node:net";

/**
 * Returns a TCP port of `host` that was free a moment ago. Services that must know their own
 * port before they start (for the links they return) use it in tests and the all-in-one mode.
 */
export function findFreePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      probe.close(() => {
        if (address && typeof address === "object") resolve(address.port);
        else reject(new Error(`could not find a free port on ${host}`));
      });
    });
  });
}
