import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP relay to a local port that can cut the link: one node of a cluster loses its Redis while
 * the others keep theirs, and the node itself runs on (unlike a stopped process).
 */
export interface TcpCut {
  /** the relay's address, as a Redis URL */
  readonly url: string;
  /** drops every connection through the relay, and those that come until restore() */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function tcpCut(targetPort: number): Promise<TcpCut> {
  const open = new Set<Socket>();
  let cut = false;
  const server = createServer((inbound) => {
    if (cut) {
      inbound.destroy();
      return;
    }
    const outbound = connect(targetPort, '127.0.0.1');
    open.add(inbound);
    open.add(outbound);
    const drop = (): void => {
      inbound.destroy();
      outbound.destroy();
      open.delete(inbound);
      open.delete(outbound);
    };
    inbound.on('error', drop).on('close', drop);
    outbound.on('error', drop).on('close', drop);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    cut: () => {
      cut = true;
      for (const s of [...open]) s.destroy();
      open.clear();
    },
    restore: () => {
      cut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of [...open]) s.destroy();
        server.close(() => resolve());
      }),
  };
}
