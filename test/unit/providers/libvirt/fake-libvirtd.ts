/** FakeLibvirtd: a scripted libvirtd on a UNIX socket for unit tests of the RPC layers. */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MessageDecoder, MessageType, REMOTE_PROGRAM, encodeMessage, type RpcMessage } from '../../../../src/providers/libvirt/rpc-framing.js';

/** A scripted libvirtd on a UNIX socket: records every message and lets the test answer. */
export class FakeLibvirtd {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-rpc-'));
  readonly socketPath = path.join(this.dir, 'sock');
  readonly received: RpcMessage[] = [];
  private client: net.Socket | undefined;
  private server: net.Server | undefined;
  onMessage: (m: RpcMessage, fake: FakeLibvirtd) => void = () => undefined;

  async start(): Promise<void> {
    this.server = net.createServer((s) => {
      this.client = s;
      const d = new MessageDecoder();
      s.on('data', (c: Buffer) => {
        for (const m of d.push(c)) {
          this.received.push(m);
          this.onMessage(m, this);
        }
      });
    });
    await new Promise<void>((r) => this.server?.listen(this.socketPath, r));
  }

  reply(serial: number, procedure: number, payload: Buffer, status = 0, type: number = MessageType.Reply, program = REMOTE_PROGRAM): void {
    this.client?.write(encodeMessage({ program, version: 1, procedure, type, serial, status }, payload));
  }

  dropClient(): void {
    this.client?.destroy();
  }

  async stop(): Promise<void> {
    this.client?.destroy();
    await new Promise<void>((r) => this.server?.close(() => r()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

