import { afterEach } from 'node:test';
import type { TestBroker } from './broker.js';
import { clusterHarness } from './cluster.js';
import { CommitFaultStore } from './faulty-store.js';
import type { RawClient } from './raw-client.js';
import { rawConnect } from './raw-session.js';

/**
 * Two cluster nodes for tests of what waits for a commit: the store of the first (`a`) is taken
 * for one on disk, and its commits are held back or made to fail as the test says. Called inside
 * a describe; after each test the commits held are let go (one held back would hold a node's stop
 * up) and the clients closed.
 */
export function commitCluster(version: 4 | 5): {
  twoNodes(): Promise<{ a: TestBroker; b: TestBroker; store: CommitFaultStore }>;
  client(port: number, clientId: string, persistent: boolean): Promise<RawClient>;
  raws: RawClient[];
} {
  const h = clusterHarness();
  const raws: RawClient[] = [];
  const stores: CommitFaultStore[] = [];
  afterEach(() => {
    for (const s of stores.splice(0)) {
      s.failing = undefined;
      s.release();
    }
    for (const r of raws.splice(0)) r.close();
  });
  return {
    raws,
    async twoNodes() {
      const prefix = h.prefix();
      const store = new CommitFaultStore();
      const other = new CommitFaultStore();
      stores.push(store, other);
      const a = await h.node(prefix, 'n0', { store });
      const b = await h.node(prefix, 'n1', { store: other });
      return { a, b, store };
    },
    async client(port, clientId, persistent) {
      const { raw } = await rawConnect(port, version, { clientId, clean: !persistent, ...(persistent ? { properties: { sessionExpiryInterval: 3600 } } : {}) });
      raws.push(raw);
      return raw;
    },
  };
}
