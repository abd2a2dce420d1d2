import { describe } from 'node:test';
import { MemoryStore } from '../../../src/persistence/memory-store.js';
import { storeContract } from './store-contract.js';

describe('store contract: memory', () => {
  // the memory store keeps its state in the object: a "restart" is a load from the same store
  storeContract('memory', { create: async () => new MemoryStore(), reopen: async (s) => s });
});
