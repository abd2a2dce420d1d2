import type { ClientInfo } from './types.js';

/**
 * A client known by its id and user name only, with no connection: whose will is sent after a
 * restart, or by a node other than the one it was connected to. Its user name is what access
 * checks of the will go by.
 */
export function absentClient(id: string, username: string | undefined): ClientInfo {
  return { id, username, remoteAddress: '', protocolVersion: 5, connectedAt: 0, keepAlive: 0 };
}
