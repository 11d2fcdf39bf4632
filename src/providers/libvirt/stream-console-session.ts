/** A VM's console as a ConsoleSession: the libvirt console stream behind the provider contract. */
import type { ConsoleSession } from '../provider.js';
import type { RpcStream } from './rpc-stream.js';

/** Wraps an open console stream; closing it finishes the stream (the domain keeps running). */
export function streamConsoleSession(stream: RpcStream): ConsoleSession {
  const ended = new Promise<Error | undefined>((resolve) => stream.once('end', resolve));
  return {
    write: (data) => stream.write(data),
    onData: (listener) => {
      stream.on('data', listener);
      stream.resume();
    },
    ended,
    close: () => stream.finish(),
  };
}
