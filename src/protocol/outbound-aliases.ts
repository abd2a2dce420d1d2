/**
 * Topic aliases the broker assigns on one connection (MQTT 5 section 3.3.2.3.4): a topic sent
 * once with its alias is afterwards sent as the alias alone. Never more than the client's Topic
 * Alias Maximum ([MQTT-3.1.2-26]); when all are taken, the oldest assignment is reused.
 */
export class OutboundAliases {
  private readonly byTopic = new Map<string, number>();
  private readonly byAlias: Array<string | undefined>;
  private cursor = 1;
  readonly max: number;

  constructor(max: number) {
    this.max = max;
    this.byAlias = new Array<string | undefined>(max + 1);
  }

  /** The alias of a topic the client already knows, or 0. */
  known(topic: string): number {
    return this.byTopic.get(topic) ?? 0;
  }

  /** Assigns an alias to a topic about to be sent in full with it. */
  assign(topic: string): number {
    const alias = this.cursor;
    this.cursor = alias === this.max ? 1 : alias + 1;
    const previous = this.byAlias[alias];
    if (previous !== undefined) this.byTopic.delete(previous);
    this.byAlias[alias] = topic;
    this.byTopic.set(topic, alias);
    return alias;
  }
}
