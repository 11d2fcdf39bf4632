/**
 * A FakeToolRunner for the LXC provider's unit tests: stands where LxcTools spawns the lxc-*
 * tools (the LxcToolRunner boundary). Every call is recorded as argv; what a tool does and
 * prints is scripted per tool, and a non-zero exit throws the LxcToolError LxcTools would throw,
 * with the same message. Tools without a script exit 0 and print nothing.
 */
import {
  LxcToolError, toolFailureMessage, type LxcTool, type LxcToolRunner, type RunOptions, type ToolOutput,
} from '../../src/providers/lxc/lxc-tools.js';

/** What a scripted tool prints and how it exits. */
export interface FakeToolResult {
  readonly stdout?: string;
  readonly stderr?: string;
  /** Exit code; 0 by default. */
  readonly code?: number;
}

/** A scripted tool: may act on the files the real one would touch, then says how it ended. */
export type FakeTool = (args: readonly string[]) => FakeToolResult | void | Promise<FakeToolResult | void>;

/** Scripted lxc-* tools behind the LxcToolRunner boundary (see the file header). */
export class FakeToolRunner implements LxcToolRunner {
  /** Every call, in order, as [tool, ...args]. */
  readonly calls: string[][] = [];
  private readonly tools = new Map<LxcTool, FakeTool>();

  /** Scripts `tool` from now on. */
  on(tool: LxcTool, script: FakeTool): this {
    this.tools.set(tool, script);
    return this;
  }

  /** The calls of one tool, as their argument lists. */
  callsOf(tool: LxcTool): string[][] {
    return this.calls.filter((c) => c[0] === tool).map((c) => c.slice(1));
  }

  async run(tool: LxcTool, args: readonly string[], options: RunOptions): Promise<ToolOutput> {
    options.signal.throwIfAborted();
    this.calls.push([tool, ...args]);
    const result = (await this.tools.get(tool)?.(args)) ?? {};
    const stdout = result.stdout ?? '';
    const stderr = result.stderr ?? '';
    const code = result.code ?? 0;
    if (code !== 0) throw new LxcToolError(tool, args, code, stderr, toolFailureMessage(tool, args, { code, stderr }));
    return { stdout, stderr, durationMs: 0 };
  }
}
