/** A mediasoup object whose closing this tracks. */
interface Tracked {
  close(): void;
  observer: { once(event: 'close', listener: () => void): unknown };
}

/**
 * What crosses a room's links (cascade) for one kind of producer, media or
 * data: each local producer sent to a far agent (its pipe consumer on the
 * link, by agent and producer), and each copy arriving from one (its pipe
 * producer under the original id). Entries leave as their objects close.
 */
export class LinkTraffic<Sent extends Tracked, Arrived extends Tracked & { id: string }> {
  /** Local producers sent over a link, by `${remoteAgentId}|${producerId}`. */
  private readonly sent = new Map<string, Sent>();
  /** Copies arriving over a link, by their (original) id. */
  private readonly arrived = new Map<string, { copy: Arrived; remoteAgentId: string }>();

  isSent(remoteAgentId: string, producerId: string): boolean {
    return this.sent.has(`${remoteAgentId}|${producerId}`);
  }

  copy(producerId: string): Arrived | undefined {
    return this.arrived.get(producerId)?.copy;
  }

  /** Where the copy of `producerId` came from, if one arrived. */
  sourceOf(producerId: string): string | undefined {
    return this.arrived.get(producerId)?.remoteAgentId;
  }

  get sentCount(): number {
    return this.sent.size;
  }

  get arrivedCount(): number {
    return this.arrived.size;
  }

  trackSent(remoteAgentId: string, producerId: string, pipeConsumer: Sent): void {
    const key = `${remoteAgentId}|${producerId}`;
    this.sent.set(key, pipeConsumer);
    pipeConsumer.observer.once('close', () => {
      if (this.sent.get(key) === pipeConsumer) this.sent.delete(key);
    });
  }

  trackArrived(remoteAgentId: string, copy: Arrived): void {
    this.arrived.set(copy.id, { copy, remoteAgentId });
    copy.observer.once('close', () => {
      if (this.arrived.get(copy.id)?.copy === copy) this.arrived.delete(copy.id);
    });
  }

  /**
   * Stops sending `producerId` to `remoteAgentId` and receiving it from there;
   * either may not exist. Closing a copy closes its consumers here, which
   * their gateway then hears about.
   */
  unpipe(remoteAgentId: string, producerId: string): void {
    this.sent.get(`${remoteAgentId}|${producerId}`)?.close();
    const arrived = this.arrived.get(producerId);
    if (arrived?.remoteAgentId === remoteAgentId) arrived.copy.close();
  }
}
