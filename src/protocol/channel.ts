import { Buffer } from 'node:buffer';
import { encodePacket } from '../codec/encoder.js';
import { LARGEST_PACKET, type ConnectPacket, type Packet, type Properties, type ProtocolVersion, type QoS, type Will } from '../codec/packets.js';
import type { ProtocolError } from '../codec/protocol-error.js';
import { RC, RC3 } from '../codec/reason-codes.js';
import type { AuthConversation } from '../hooks/authenticator.js';
import type { ClientInfo } from '../hooks/types.js';
import type { Message, ShareRef } from '../session/message.js';
import type { Session } from '../session/session.js';
import { Deque } from '../session/deque.js';
import { LazyMap } from '../collections/lazy-map.js';
import type { MatchMemo } from '../topic/subscription-trie.js';
import { handleAck } from './handlers/acks.js';
import { handleAuth } from './handlers/auth.js';
import { handleConnect } from './handlers/connect.js';
import { handleDisconnect } from './handlers/disconnect.js';
import { handlePublish, handlePubrel } from './handlers/publish.js';
import { handleSubscribe } from './handlers/subscribe.js';
import { handleUnsubscribe } from './handlers/unsubscribe.js';
import type { PublishQuota } from './publish-quota.js';
import { Outbound } from './outbound.js';
import type { BrokerPort, ConnectionPort, SessionOwner } from './ports.js';

type State = 'awaiting-connect' | 'connecting' | 'authenticating' | 'connected' | 'closed';

/** Packets held while an asynchronous hook answers; beyond this the socket stops being read. */
const BACKLOG_PAUSE = 256;
/** setTimeout fires at once for anything longer (about 24.8 days) */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The per-connection MQTT state machine. It receives decoded packets and acts through two ports:
 * the connection (bytes out, close) and the broker (sessions, routing, hooks). It never touches
 * a socket, so it can be driven packet by packet in tests.
 */
export class Channel implements SessionOwner {
  readonly conn: ConnectionPort;
  readonly broker: BrokerPort;
  state: State = 'awaiting-connect';
  version: ProtocolVersion = 4;
  client: ClientInfo;
  session: Session | undefined;
  will: Will | undefined;
  /** 5.0: the client asked for no reason strings / user properties on most packets */
  problemInformation = true;
  /** 5.0: the client's limits on what we send */
  // a small integer rather than Infinity: no boxed number per connection
  clientMaxPacketSize = LARGEST_PACKET;
  /** Session Expiry Interval in force for this connection (seconds) */
  sessionExpiry = 0;
  /** 5.0 inbound topic aliases */
  readonly topicAliases = new LazyMap<number, string>();
  /** UTF-8 bytes of the topics in topicAliases, held under maxTopicAliasBytes */
  topicAliasBytes = 0;
  /** 5.0 enhanced authentication: the method named in CONNECT, and the exchange under way */
  authMethod: string | undefined;
  authConversation: AuthConversation | undefined;
  /** the CONNECT's login was accepted: what is left before CONNACK is taking its session over */
  authenticated = false;
  /** the CONNECT waiting for its authentication exchange to finish */
  pendingConnect: { packet: ConnectPacket; clientId: string; assigned: boolean } | undefined;
  /** incoming QoS 1 publishes whose acknowledgement waits on a hook or the store */
  pendingQos1 = 0;
  /** settles when the latest acknowledgement waiting on the store or the cluster can go */
  ackWait: Promise<void> | undefined;
  readonly outbound: Outbound;
  /** the session is open and its CONNACK waits for the disk (connect.ts): nothing may go before it */
  connackDue = false;

  private busy = false;
  private readonly backlog = new Deque<Packet>();
  private paused = false;
  /** reading is stopped for a while because the client publishes faster than its rate */
  private throttled = false;
  /** clientStalled was told of this connection (handleStalled) */
  private stallNoted = false;
  /** made at the first publish while publish rates are limited */
  publishQuota: PublishQuota | undefined;
  /** what this client's last topic matched (see MatchMemo); made at its first publish */
  matchMemo: MatchMemo | undefined;

  constructor(conn: ConnectionPort, broker: BrokerPort) {
    this.conn = conn;
    this.broker = broker;
    this.client = { id: '', username: undefined, remoteAddress: conn.remoteAddress, protocolVersion: 4, connectedAt: 0, keepAlive: 0 };
    this.outbound = new Outbound(this);
  }

  // ---- input ------------------------------------------------------------------------------

  /** Handles one packet from the client, in order; packets wait while a hook answers. */
  handleIn(packet: Packet): void {
    if (this.state === 'closed') return;
    if (this.busy || this.throttled) {
      this.backlog.push(packet);
      if (!this.paused && this.backlog.length >= BACKLOG_PAUSE) {
        this.paused = true;
        this.conn.pauseReading();
      }
      return;
    }
    const pending = this.dispatch(packet);
    if (pending !== undefined) this.waitFor(pending);
  }

  /** Stops reading from the client for `ms` (a publish rate was exceeded); the one timer is on this slow path only. */
  throttle(ms: number): void {
    if (this.throttled || this.state === 'closed') return;
    this.throttled = true;
    if (!this.paused) {
      this.paused = true;
      this.conn.pauseReading();
    }
    // packets already read wait in the backlog, so the rate holds within a chunk too. A pause beyond
    // what a timer can hold ends early; the debt it leaves is charged again at the next publish.
    setTimeout(
      () => {
        this.throttled = false;
        if (this.state === 'closed') return;
        // the PINGREQs the client sent meanwhile are unread in the socket: its keep alive counts from now
        if (this.state === 'connected') this.conn.setKeepAlive(this.client.keepAlive);
        if (!this.busy) this.resume();
      },
      Math.min(ms, MAX_TIMER_MS),
    ).unref();
  }

  /** The parser found a malformed packet. */
  handleProtocolError(err: ProtocolError): void {
    if (this.state === 'closed') return;
    if (this.state === 'awaiting-connect') {
      if (err.inConnect && err.reasonCode === RC.UnsupportedProtocolVersion) {
        // [MQTT-3.1.2-2] unsupported level: a 3.1.1-shaped CONNACK return code 1 is what every
        // client version can read.
        this.version = err.protocolVersion ?? 4;
        this.sendConnack(false, this.version === 5 ? RC.UnsupportedProtocolVersion : RC3.UnacceptableProtocolVersion);
      } else if (err.inConnect && err.protocolVersion === 5) {
        this.version = 5;
        this.sendConnack(false, err.reasonCode);
      }
      this.terminate(`malformed CONNECT: ${err.message}`, err.reasonCode);
      return;
    }
    this.closeWith(err.reasonCode, err.message);
  }

  /** The handling of a packet failed on a fault of the broker's own: reported, and only this client is let go. */
  handleInternalError(err: unknown): void {
    this.conn.reportError(err);
    try {
      this.closeWith(RC.ImplementationSpecificError, `internal error: ${err instanceof Error ? err.message : String(err)}`);
    } catch (again) {
      // ending the session met a fault as well: what it held stays as it is, and the client goes
      this.conn.reportError(again);
    }
    // a fault while the session was ending left the channel closed and the connection open
    this.conn.close(RC.ImplementationSpecificError);
  }

  /** Connect timeout or keep-alive timeout. */
  handleTimeout(): void {
    if (this.state === 'closed') return;
    if (this.state === 'connected') {
      // the broker, not the client, stopped reading: the end of the pause restarts the keep alive
      if (this.throttled) return;
      // [MQTT-3.1.2-24] / [MQTT-3.1.2-22]: close; the will is published (abnormal close).
      this.closeWith(RC.KeepAliveTimeout, 'keep alive timeout');
    } else {
      // no CONNACK in the time allowed, as a keep alive timeout: a WebSocket client is told so
      // (close code 1008), not that all went well. The reason says which step did not finish.
      const reason =
        this.state === 'awaiting-connect'
          ? 'no CONNECT within the connect timeout'
          : this.authenticated
            ? 'the session could not be taken over within the connect timeout'
            : 'authentication did not finish within the connect timeout';
      this.terminate(reason, RC.KeepAliveTimeout);
    }
  }

  /** The network connection is gone (for whatever reason). */
  handleClosed(): void {
    if (this.state === 'closed') {
      return;
    }
    this.endSession('connection lost');
  }

  /** The client left this much output unread; the connection stopped reading it meanwhile. */
  handleStalled(unreadBytes: number): void {
    // once a connection: the kernel's buffers take some of the output at each drain, so a client
    // that reads nothing stalls a few times before they are full
    if (this.stallNoted || this.state === 'closed') return;
    this.stallNoted = true;
    this.broker.clientStalled(this.client, unreadBytes);
  }

  /** Socket drained: queued deliveries may go out. */
  handleDrain(): void {
    if (this.state === 'connected') this.outbound.pump();
  }

  private dispatch(packet: Packet): Promise<void> | undefined {
    if (this.state !== 'connected') {
      if (this.state === 'awaiting-connect' && packet.type === 'connect') return handleConnect(this, packet);
      if (this.state === 'authenticating') {
        if (packet.type === 'auth') return handleAuth(this, packet);
        if (packet.type === 'disconnect') return void this.terminate('client disconnected during authentication');
        this.terminate(`${packet.type.toUpperCase()} during authentication`, RC.ProtocolError);
        return undefined;
      }
      // [MQTT-3.1.0-1] the first packet must be CONNECT
      this.terminate(`expected CONNECT first, got ${packet.type.toUpperCase()}`, RC.ProtocolError);
      return undefined;
    }
    switch (packet.type) {
      case 'publish':
        return handlePublish(this, packet);
      case 'puback':
      case 'pubrec':
      case 'pubcomp':
        handleAck(this, packet);
        return undefined;
      case 'pubrel':
        handlePubrel(this, packet);
        return undefined;
      case 'subscribe':
        return handleSubscribe(this, packet);
      case 'unsubscribe':
        handleUnsubscribe(this, packet);
        return undefined;
      case 'pingreq':
        this.send({ type: 'pingresp' });
        return undefined;
      case 'disconnect':
        handleDisconnect(this, packet);
        return undefined;
      case 'auth':
        return handleAuth(this, packet);
      case 'connect':
        // [MQTT-3.1.0-2] a second CONNECT is a protocol violation
        this.closeWith(RC.ProtocolError, 'second CONNECT');
        return undefined;
      default:
        // server-to-client packets sent by a client
        this.closeWith(RC.ProtocolError, `unexpected ${packet.type.toUpperCase()} from a client`);
        return undefined;
    }
  }

  private waitFor(pending: Promise<void>): void {
    this.busy = true;
    pending.then(
      () => this.resume(),
      (err: unknown) => {
        this.handleInternalError(err);
        this.resume();
      },
    );
  }

  private resume(): void {
    this.busy = false;
    try {
      while (this.backlog.length > 0 && !this.busy && !this.throttled && this.state !== 'closed') {
        const next = this.backlog.shift() as Packet;
        const pending = this.dispatch(next);
        if (pending !== undefined) {
          this.waitFor(pending);
          return;
        }
      }
    } catch (err) {
      // packets that waited for a hook or a commit are handled here, outside any read of the socket
      this.handleInternalError(err);
    }
    if (this.state === 'closed') this.backlog.clear();
    if (this.paused && this.backlog.length === 0 && !this.throttled) {
      this.paused = false;
      this.conn.resumeReading();
    }
  }

  // ---- output -----------------------------------------------------------------------------

  /** Encodes and writes a packet, honouring the client's Maximum Packet Size and problem-info wish. */
  send(packet: Packet): void {
    if (this.version === 5 && 'properties' in packet && packet.properties !== undefined) {
      const t = packet.type;
      if (!this.problemInformation && t !== 'connack' && t !== 'disconnect' && t !== 'publish') {
        // [MQTT-3.1.2-29] no Reason String or User Properties except on PUBLISH, CONNACK, DISCONNECT
        packet = withoutDiagnostics(packet);
      }
    }
    let bytes = encodePacket(packet, this.version);
    if (bytes.length > this.clientMaxPacketSize && 'properties' in packet && packet.properties !== undefined) {
      // [MQTT-3.2.2-19] [MQTT-3.2.2-20] diagnostics are the first thing to go when over the limit
      bytes = encodePacket(withoutDiagnostics(packet), this.version);
    }
    if (bytes.length > this.clientMaxPacketSize && packet.type === 'connack' && packet.properties !== undefined) {
      // a client with a tiny limit still gets its CONNACK: only what it cannot do without is kept
      const { assignedClientIdentifier, authenticationMethod, authenticationData } = packet.properties;
      bytes = encodePacket({ ...packet, properties: { assignedClientIdentifier, authenticationMethod, authenticationData } }, this.version);
    }
    if (bytes.length > this.clientMaxPacketSize) {
      // [MQTT-3.1.2-24] (5.0) never more than the client's Maximum Packet Size. A CONNACK letting
      // the client in cannot simply be left out, as nothing may come before it ([MQTT-3.2.0-1]):
      // the connection ends, and as the client never learnt it was in, its will is not published
      if (packet.type === 'connack' && packet.reasonCode < 0x80) {
        this.will = undefined;
        this.terminate(`CONNACK of ${bytes.length} bytes over the client's Maximum Packet Size of ${this.clientMaxPacketSize}`);
      }
      return;
    }
    this.conn.write(bytes);
  }

  /**
   * PUBACK, PUBREC, PUBREL or PUBCOMP with reason Success and no properties: four bytes, the same
   * in every version (5.0 section 3.4.2.1 lets a Success reason code without properties be left
   * out), written without building a packet object. This is the per-message reply of QoS 1/2.
   */
  sendAck(firstByte: number, packetId: number): void {
    if (this.clientMaxPacketSize < 4) return;
    const bytes = Buffer.allocUnsafe(4);
    bytes[0] = firstByte;
    bytes[1] = 2;
    bytes[2] = packetId >> 8;
    bytes[3] = packetId & 0xff;
    this.conn.write(bytes);
  }

  sendConnack(sessionPresent: boolean, reasonCode: number, properties?: Properties): void {
    this.send({ type: 'connack', sessionPresent, reasonCode, properties });
  }

  /** Sends DISCONNECT with a reason (5.0 only), then closes; the will is published. */
  closeWith(reasonCode: number, reason: string): void {
    if (this.state === 'closed') return;
    // no packet may come before the CONNACK ([MQTT-3.2.0-1]), not even a DISCONNECT
    if (this.state === 'connected' && this.version === 5 && !this.connackDue) {
      const properties = this.problemInformation ? { reasonString: reason } : undefined;
      this.send({ type: 'disconnect', reasonCode, properties });
    }
    // the log line carries the MQTT reason code, whatever the client's version
    this.terminate(`${reason} (reason code 0x${reasonCode.toString(16).padStart(2, '0')})`, reasonCode);
  }

  /**
   * Closes the network connection at once, publishing the will if one is set. `reasonCode` (5.0
   * codes, any version): why, when not a normal close, for a transport that can tell the client.
   */
  terminate(reason: string, reasonCode?: number): void {
    if (this.state === 'closed') return;
    // a client let in is told of as it leaves (closeSession); one never let in only here
    const refused = this.state !== 'connected';
    try {
      this.endSession(reason);
    } finally {
      this.conn.close(reasonCode);
    }
    if (refused) this.broker.clientRefused(this.client, reason, reasonCode);
  }

  private endSession(reason: string): void {
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this.backlog.clear();
    const session = this.session;
    if (wasConnected && session !== undefined) {
      this.session = undefined;
      const will = this.will;
      this.will = undefined;
      this.broker.closeSession(this, session, will, reason);
    }
  }

  // ---- SessionOwner -------------------------------------------------------------------------

  deliver(message: Message, qos: QoS, retain: boolean, subscriptionIds: number[] | undefined, share: ShareRef | undefined): void {
    this.outbound.deliver(message, qos, retain, subscriptionIds, share);
  }

  get hasCapacity(): boolean {
    return this.outbound.hasCapacity;
  }

  disconnect(reasonCode: number): void {
    const reason =
      reasonCode === RC.SessionTakenOver
        ? 'session taken over'
        : reasonCode === RC.ServerShuttingDown
          ? 'server shutting down'
          : 'disconnected by the server';
    this.closeWith(reasonCode, reason);
  }

}

function withoutDiagnostics<P extends Packet>(packet: P): P {
  if (!('properties' in packet) || packet.properties === undefined) return packet;
  const { reasonString: _r, userProperties: _u, ...rest } = packet.properties;
  return { ...packet, properties: Object.keys(rest).length > 0 ? rest : undefined };
}
